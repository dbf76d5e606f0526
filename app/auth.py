"""API keys and tenants.

A key is `pl_` followed by 32 random URL-safe characters; only its SHA-256 is stored. With no
active keys in the database the service runs in single-user mode: every request belongs to
the tenant `default`, which is allowed only when the server is bound to a loopback address.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import ApiKey, Tenant

ANONYMOUS_TENANT = "default"
KEY_PREFIX = "pl_"


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def get_or_create_tenant(session: Session, name: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.name == name))
    if tenant is None:
        tenant = Tenant(name=name)
        session.add(tenant)
        session.flush()
    return tenant


def create_api_key(session: Session, tenant_name: str) -> str:
    """Create a key for the tenant (creating the tenant if new) and return the secret."""
    tenant = get_or_create_tenant(session, tenant_name)
    secret = KEY_PREFIX + secrets.token_urlsafe(24)
    session.add(ApiKey(tenant_id=tenant.id, key_hash=hash_key(secret), prefix=secret[:8]))
    session.flush()
    return secret


def revoke_api_key(session: Session, prefix: str) -> int:
    """Revoke every active key whose first characters equal prefix; return how many."""
    keys = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix[:8], ApiKey.revoked_at.is_(None))).all()
    for key in keys:
        key.revoked_at = datetime.now(timezone.utc)
    return len(keys)


def active_keys_exist(session: Session) -> bool:
    return session.scalar(select(ApiKey.id).where(ApiKey.revoked_at.is_(None)).limit(1)) is not None


def tenant_for_key(session: Session, secret: str) -> Tenant | None:
    key = session.scalar(
        select(ApiKey).where(ApiKey.key_hash == hash_key(secret), ApiKey.revoked_at.is_(None))
    )
    return session.get(Tenant, key.tenant_id) if key else None


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
