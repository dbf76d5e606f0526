"""Human-readable output of the CLI (rich tables); --json bypasses all of it."""

from __future__ import annotations

from rich.table import Table

from app.cli.output import stdout


def _format_number(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def render_profile(document: dict) -> None:
    dataset = document.get("dataset", {})
    profile = document["profile"]
    table = Table(title=f"profile of {dataset.get('name', 'dataset')}", show_header=False)
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key in ("n_users", "n_items", "n_interactions", "rows_dropped"):
        if key in dataset:
            table.add_row(key, _format_number(dataset[key]))
    for key, value in profile.items():
        if key in dataset:
            continue
        if isinstance(value, dict):
            for inner_key, inner_value in value.items():
                if not isinstance(inner_value, (dict, list)):
                    table.add_row(f"{key}.{inner_key}", _format_number(inner_value))
        elif not isinstance(value, list):
            table.add_row(key, _format_number(value))
    stdout.print(table)
    for warning in dataset.get("warnings", []):
        stdout.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)

    sample_entropy = profile.get("sample_entropy") or {}
    if sample_entropy.get("n_used") == 0 and sample_entropy.get("n_left_out"):
        stdout.print(
            "note: Sample Entropy is undefined for every sequence: none repeats an m-item template within r, or all "
            "are shorter than m + 2 items (docs/entropy.md)",
            soft_wrap=True,
        )

    d_prime = profile.get("d_prime")
    if isinstance(d_prime, (int, float)) and d_prime < 0:
        stdout.print(
            "note: D' is negative because Pincus ApEn is below 0 when templates rarely repeat within a sequence "
            "(docs/entropy.md). The laws use the `reference` variant; pass --variant reference to see their D'.",
            soft_wrap=True,
        )


def _describe_law(law: dict) -> str:
    source = law.get("source", "law")
    parts = [f"{law['form']} for {law['metric']}"]
    if source == "reference":
        parts.append("the shipped reference law")
        error = law.get("published_error") or {}
        numbers = {key: value for key, value in error.items() if isinstance(value, (int, float))}
        if numbers:
            parts.append("published error: " + ", ".join(f"{key} {_format_number(value)}" for key, value in numbers.items()))
        if error.get("note"):
            parts.append(str(error["note"]))
    elif source == "dataset-runs":
        parts.append(f"fitted on this dataset's {len(law.get('run_ids', []))} runs")
    elif law.get("id") is not None:
        parts.append(f"law {law['id']}")
    elif law.get("path"):
        parts.append(f"from {law['path']}")
    quality = [f"{name} {_format_number(law[name])}" for name in ("r2", "loo_mape_percent") if law.get(name) is not None]
    return "; ".join(parts + quality)


def _describe_data(data: dict) -> str:
    if "tokens" not in data:
        return f"D' = {_format_number(data['d_prime'])}"
    return (f"{data.get('dataset', 'dataset')}: D' = {_format_number(data['d_prime'])} = tokens {_format_number(data['tokens'])}"
            f" x ApEn {_format_number(data['apen'])} ({data['apen_variant']}, m={data['m']}, max_len={data['max_len']})")


def _print_data(data: dict) -> None:
    stdout.print(f"data: {_describe_data(data)}")
    for warning in data.get("warnings", []):
        stdout.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)


def _interval(low, high) -> str:
    return "n/a" if low is None else f"[{low:.4f}, {high:.4f}]"


def render_law(document: dict) -> None:
    summary = document["summary"]
    stdout.print(f"[bold]{document['form']}[/] for {document['metric']} on {summary['n_observations']} runs"
                 + (f" (law {document['id']})" if document.get("id") is not None else ""))
    table = Table("parameter", "value", "std. error")
    for name, value in summary["params"].items():
        error = summary["stderr"].get(name)
        table.add_row(name, _format_number(value), "fixed" if name not in summary["stderr"] else _format_number(error))
    stdout.print(table)
    stdout.print(f"R² {_format_number(summary['r2'])}, RMSE {_format_number(summary['rmse'])}, "
                 f"MAPE {_format_number(summary['mape_percent'])}%, leave-one-out MAPE {_format_number(summary['loo_mape_percent'])}%")
    for warning in summary["warnings"]:
        stdout.print(f"[yellow]warning:[/] {warning}")
    if document.get("output"):
        stdout.print(f"law written to {document['output']}")


def render_predictions(document: dict) -> None:
    stdout.print(f"law: {_describe_law(document['law'])}")
    _print_data(document["data"])
    table = Table("n_layers", "d_model", document["law"]["metric"], "90% interval", "extrapolated")
    for row in document["predictions"]:
        table.add_row(str(row["n_layers"]), str(row["d_model"]), f"{row['predicted']:.4f}",
                      _interval(row["low"], row["high"]), ", ".join(row["extrapolated"]) or "-")
    stdout.print(table)
    for warning in document["warnings"]:
        stdout.print(f"[yellow]warning:[/] {warning}")


def render_plan(document: dict) -> None:
    plan = document["plan"]
    best = plan["best"]
    stdout.print(f"law: {_describe_law(document['law'])}")
    _print_data(document["data"])
    stdout.print(f"[bold]best within {plan['budget_kind']} <= {_format_number(plan['budget'])}:[/] "
                 f"{best['n_layers']} layers x d_model {best['d_model']}, predicted {plan['metric']} {best['predicted']:.4f}, "
                 f"{_format_number(best['params'])} parameters")
    table = Table("n_layers", "d_model", "parameters", "size", plan["metric"], "within budget", title="frontier")
    for candidate in plan["frontier"]:
        table.add_row(str(candidate["n_layers"]), str(candidate["d_model"]), _format_number(candidate["params"]),
                      _format_number(candidate["size"]), f"{candidate['predicted']:.4f}", "yes" if candidate["within_budget"] else "no")
    stdout.print(table)
    for warning in plan["warnings"]:
        stdout.print(f"[yellow]warning:[/] {warning}")


def render_check(document: dict) -> None:
    verdict = "[bold green]PASSED[/]" if document["passed"] else "[bold red]FAILED[/]"
    numbers = document["numbers"]
    stdout.print(f"{verdict}  predicted {document['law']['metric']} {numbers['predicted']:.4f} "
                 f"{_interval(numbers.get('interval_low'), numbers.get('interval_high'))}")
    for reason in document["reasons"]:
        stdout.print(f"  - {reason}")
    for warning in document["warnings"]:
        stdout.print(f"  [yellow]warning:[/] {warning}")
    stdout.print(f"law: {_describe_law(document['law'])}")
    _print_data(document["data"])


def render_training(document: dict) -> None:
    metrics = document.get("metrics", {})
    model = document.get("config", {}).get("model") or document.get("run", {})
    size = f"{model.get('arch')} {model.get('n_layers')} x {model.get('d_model')}" if model else "model"
    stdout.print(f"[bold]{size} on {document['dataset']}[/], protocol {document.get('protocol') or model.get('protocol')} "
                 f"(test set, best validation epoch {document.get('best_epoch')})", soft_wrap=True)
    table = Table("K", "HR@K", "NDCG@K")
    for k in sorted({int(name.split("@")[1]) for name in metrics if "@" in name}):
        table.add_row(str(k), _format_metric(metrics.get(f"hr@{k}")), _format_metric(metrics.get(f"ndcg@{k}")))
    stdout.print(table)
    if "mrr" in metrics:
        stdout.print(f"MRR {metrics['mrr']:.4f}")

    facts = {key: document.get(key) for key in ("epochs_run", "train_time_s", "sequences_per_s", "n_parameters", "device")}
    if facts["train_time_s"] is not None:
        facts["train_time_s"] = round(facts["train_time_s"], 1)
    if facts["sequences_per_s"] is not None:
        facts["sequences_per_s"] = round(facts["sequences_per_s"])
    stdout.print(", ".join(f"{key} {_format_number(value)}" for key, value in facts.items() if value is not None), soft_wrap=True)
    if document.get("d_prime") is not None:
        variant = document.get("apen_variant")
        stdout.print(f"d_prime {_format_number(document['d_prime'])}" + (f" ({variant} ApEn)" if variant else ""), soft_wrap=True)

    for metric, compared in (document.get("prediction") or {}).items():
        stdout.print(_comparison_line(metric, compared), soft_wrap=True)
    for note in document.get("notes", []):
        stdout.print(f"note: {note}", soft_wrap=True)


def _format_metric(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _comparison_line(metric: str, compared: dict) -> str:
    """Format one line: predicted (with interval and law) against measured, and whether the interval contains it."""
    line = f"{metric}: predicted {compared['predicted']:.4f}"
    if compared.get("low") is not None and compared.get("high") is not None:
        line += f" [{compared['low']:.4f}, {compared['high']:.4f}]"
    if compared.get("law_ref"):
        line += f" by law {compared['law_ref']}"
    line += f", measured {compared['measured']:.4f}"
    within = compared.get("within_interval")
    if within is not None:
        line += ": inside the interval" if within else ": outside the interval"
    return line
