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
# Leading characters of a key stored in clear, so that an operator can name a key to revoke.
KEY_PREFIX_LENGTH = 8


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
    session.add(ApiKey(tenant_id=tenant.id, key_hash=hash_key(secret), prefix=secret[:KEY_PREFIX_LENGTH]))
    session.flush()
    return secret


def revoke_api_key(session: Session, key_or_prefix: str) -> int:
    """Revoke the active key given whole or by its first KEY_PREFIX_LENGTH characters; return 0 or 1.

    A whole key must match a stored hash, so a mistyped key revokes nothing. A prefix must
    name exactly one active key.

    Raises:
        ValueError: when the text is shorter than a prefix, or the prefix names several keys.
    """
    active = select(ApiKey).where(ApiKey.revoked_at.is_(None))
    if len(key_or_prefix) < KEY_PREFIX_LENGTH:
        raise ValueError(f"give the whole key or its first {KEY_PREFIX_LENGTH} characters, not {key_or_prefix!r}")
    if len(key_or_prefix) == KEY_PREFIX_LENGTH:
        keys = session.scalars(active.where(ApiKey.prefix == key_or_prefix)).all()
    else:
        keys = session.scalars(active.where(ApiKey.key_hash == hash_key(key_or_prefix))).all()
    if len(keys) > 1:
        raise ValueError(f"{len(keys)} active keys start with {key_or_prefix!r}: give the whole key")

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
