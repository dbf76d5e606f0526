"""Commands that analyse data and laws, offline on files or against a server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from app.cli import client, offline
from app.cli.output import EXIT_CHECK_FAILED, EXIT_OK, fail, print_json
from app.cli.render import render_check, render_law, render_plan, render_predictions, render_profile
from app.law_service import LawRequestError, evaluate_grid, law_summary, prediction_warnings
from core.plotting import plot_law
from core.planning import PlanningError, SizeConfig, check_config, plan_sizes
from core.sizing import SizingError, parse_size

FORMAT_HELP = "Log format: delimited, inter, sasrec, sequence-lines, item-list-column or parquet (default: detect)."

FileArgument = Annotated[Path, typer.Argument(help="Interaction log (any supported format, optionally compressed).")]
OptionalFile = Annotated[
    Path | None, typer.Argument(help="Interaction log; or leave it out and give --dataset ID with --server.")
]
DatasetOption = Annotated[int | None, typer.Option("--dataset", help="Id of a dataset uploaded to the server (needs --server).")]
FormatOption = Annotated[str | None, typer.Option("--format", help=FORMAT_HELP)]
SeparatorOption = Annotated[str | None, typer.Option(help="Field separator, e.g. ',' or '\\t' or '::'.")]
HeaderOption = Annotated[bool | None, typer.Option("--header/--no-header", help="Whether the first line names the columns.")]
UserColumnOption = Annotated[str | None, typer.Option(help="Name or 0-based position of the user (or session) column.")]
ItemColumnOption = Annotated[str | None, typer.Option(help="Name or 0-based position of the item column.")]
TimestampColumnOption = Annotated[
    str | None, typer.Option(help="Name or 0-based position of the timestamp column, or `none` to keep file order.")
]
MetricOption = Annotated[str, typer.Option(help="Metric to predict: hr@K, ndcg@K or mrr.")]
LawOption = Annotated[
    str | None,
    typer.Option("--law", help="`reference`, a law id on the server, or a law.json from `perflaw fit --output`. "
                 "Default: the dataset's own runs on a server, else the reference law."),
]
MaxLenOption = Annotated[int, typer.Option("--max-len", help="The model's max_len; D' counts at most this many items per sequence.")]
ServerOption = Annotated[
    str | None,
    typer.Option("--server", envvar="PERFLAW_SERVER", help="Base URL of a perflaw server; the key comes from PERFLAW_API_KEY."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else there.")]


def profile(
    file: FileArgument,
    format: Annotated[str | None, typer.Option("--format", help=FORMAT_HELP)] = None,
    separator: Annotated[str | None, typer.Option(help="Field separator, e.g. ',' or '\\t' or '::'.")] = None,
    header: Annotated[bool | None, typer.Option("--header/--no-header", help="Whether the first line names the columns.")] = None,
    user_column: Annotated[str | None, typer.Option(help="Name or 0-based position of the user (or session) column.")] = None,
    item_column: Annotated[str | None, typer.Option(help="Name or 0-based position of the item column.")] = None,
    timestamp_column: Annotated[str | None, typer.Option(help="Name or 0-based position of the timestamp column.")] = None,
    drop_invalid: Annotated[bool, typer.Option("--drop-invalid", help="Drop rows with an empty user or item and count them.")] = False,
    m: Annotated[int, typer.Option("--m", help="ApEn template length.")] = 2,
    r: Annotated[float, typer.Option("--r", help="ApEn tolerance; r < 1 matches item ids exactly.")] = 0.0,
    max_len: Annotated[int, typer.Option("--max-len", help="Keep each sequence's last max_len items; 0 keeps whole sequences.")] = 50,
    variant: Annotated[str, typer.Option(help="ApEn variant: pincus, reference or pooled.")] = "pincus",
    server: ServerOption = None,
    json_output: JsonOption = False,
) -> None:
    """Print a dataset's data-quality profile: ApEn and friends, tokens and D'."""
    read_options = _read_arguments(format, separator, header, user_column, item_column, timestamp_column, drop_invalid)
    profile_params = {"m": m, "r": r, "max_len": max_len, "variant": variant}
    if server:
        document = client.profile_file(server, file, read_options, profile_params, show_progress=not json_output)
    else:
        document = offline.profile_file(file, read_options, profile_params, show_progress=not json_output)
    if json_output:
        print_json(document)
    else:
        render_profile(document)


def _read_arguments(format, separator, header, user_column, item_column, timestamp_column, drop_invalid=False):
    return offline.ReadArguments(
        format=format, separator=_unescape(separator), header=header, user_column=user_column,
        item_column=item_column, timestamp_column=timestamp_column, drop_invalid=drop_invalid,
    )


def _unescape(separator: str | None) -> str | None:
    """Turn a typed backslash-t into a tab, since shells pass it as two characters."""
    return separator.replace("\\t", "\t") if separator is not None else None


def _int_list(text: str, option: str) -> list[int]:
    """Parse a comma-separated list of positive integers such as "2,4,8"."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        fail(f"{option} must be comma-separated whole numbers such as 2,4,8, got {text!r}")
    if not values or min(values) < 1:
        fail(f"{option} must list positive whole numbers, got {text!r}")
    return values


def _law_choice(law: str | None) -> int | str | None:
    return int(law) if law is not None and law.isdigit() else law


def _server_data_request(server, file, dataset, read_options, law, metric, max_len) -> dict:
    """Return the data and law fields of a server request, uploading the file if one is given."""
    if law is not None and not law.isdigit() and law != "reference":
        fail("--law with --server takes a law id or `reference`; a law file works offline only")
    if dataset is None:
        dataset = client.upload_file(server, _require_file(file), read_options)["id"]
    request = {"dataset_id": dataset, "metric": metric, "max_len": max_len}
    if law is not None:
        request["law"] = _law_choice(law)
    return request


def _require_file(file: Path | None) -> Path:
    if file is None:
        fail("give an interaction log FILE, or --dataset ID with --server")
    return file


def _offline_data(file, dataset, read_options, max_len, show_progress) -> dict:
    if dataset is not None:
        fail("--dataset names a dataset on a server; add --server URL, or pass the log FILE instead")
    return offline.data_for_file(_require_file(file), read_options, max_len, show_progress=show_progress)


def fit(
    runs: Annotated[Path | None, typer.Argument(help="Runs file: CSV with a header or JSON Lines, one run per row.")] = None,
    dataset: DatasetOption = None,
    form: Annotated[str, typer.Option(help="Law form: performance_law or scaling_law.")] = "performance_law",
    metric: MetricOption = "hr@10",
    protocol: Annotated[str | None, typer.Option(help="Fit only runs of this protocol.")] = None,
    arch: Annotated[str | None, typer.Option(help="Fit only runs of this architecture.")] = None,
    dataset_name: Annotated[str | None, typer.Option(help="Fit only runs whose `dataset` column is this name.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the starting points and the bootstrap.")] = 0,
    n_bootstrap: Annotated[int, typer.Option(help="Bootstrap refits for prediction intervals.")] = 200,
    output: Annotated[Path | None, typer.Option(help="Write the fitted law here, for --law in predict, plan and check.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Offline: draw the runs and fitted curves to this .png or .svg file.")] = None,
    server: ServerOption = None,
    json_output: JsonOption = False,
) -> None:
    """Fit a law on measured runs and print its parameters and fit quality."""
    if plot is not None and plot.suffix.lower() not in (".png", ".svg"):
        fail(f"--plot must name a .png or .svg file, got {plot}")
    if server:
        request = {"metric": metric, "form": form, "protocol": protocol, "arch": arch, "seed": seed,
                   "n_bootstrap": n_bootstrap, "dataset": dataset_name}
        if dataset is not None:
            request["dataset_id"] = dataset
        elif runs is not None:
            imported = client.import_runs_file(server, runs)
            request["run_ids"] = [run["id"] for run in imported["items"]]
        document = client.request_json(server, "POST", "/v1/laws", json={k: v for k, v in request.items() if v is not None})
    else:
        if runs is None:
            fail("give a RUNS file, or --dataset ID with --server")
        law = offline.fit_runs_file(runs, metric, form=form, protocol=protocol, arch=arch, dataset=dataset_name,
                                    seed=seed, n_bootstrap=n_bootstrap)
        if output:
            output.write_text(json.dumps(law.to_dict()))
        if plot:
            plot.write_bytes(plot_law(law, plot.suffix.lower().lstrip(".")))
        document = {"id": None, "form": law.form, "metric": law.metric, "summary": law_summary(law),
                    "output": str(output) if output else None}
    if json_output:
        print_json(document)
    else:
        render_law(document)


def predict(
    file: OptionalFile = None,
    dataset: DatasetOption = None,
    layers: Annotated[str, typer.Option(help="Layer counts, comma-separated, e.g. 2,4,8.")] = "2",
    d_model: Annotated[str, typer.Option("--d-model", help="Widths, comma-separated, e.g. 64,128.")] = "64",
    metric: MetricOption = "hr@10",
    law: LawOption = None,
    max_len: MaxLenOption = 50,
    level: Annotated[float, typer.Option(help="Coverage of the prediction interval.")] = 0.9,
    format: FormatOption = None, separator: SeparatorOption = None, header: HeaderOption = None,
    user_column: UserColumnOption = None, item_column: ItemColumnOption = None, timestamp_column: TimestampColumnOption = None,
    server: ServerOption = None,
    json_output: JsonOption = False,
) -> None:
    """Predict the metric at every combination of --layers and --d-model, with intervals."""
    layer_list, width_list = _int_list(layers, "--layers"), _int_list(d_model, "--d-model")
    if not 0 < level < 1:
        fail(f"--level must lie strictly between 0 and 1, got {level}")
    read_options = _read_arguments(format, separator, header, user_column, item_column, timestamp_column)
    if server:
        request = _server_data_request(server, file, dataset, read_options, law, metric, max_len)
        document = client.request_json(server, "POST", "/v1/predictions",
                                       json={**request, "layers": layer_list, "d_models": width_list, "level": level})
    else:
        data = _offline_data(file, dataset, read_options, max_len, not json_output)
        fitted, description = offline.load_law(law, metric)
        configs = [(n_layers, width) for n_layers in layer_list for width in width_list]
        try:
            rows = evaluate_grid(fitted, data["d_prime"], configs, level)
        except LawRequestError as error:
            fail(str(error))
        warnings = list(description["warnings"]) + prediction_warnings(rows)
        document = {"law": description, "data": data, "predictions": rows, "warnings": warnings}
    if json_output:
        print_json(document)
    else:
        render_predictions(document)


def _budget_option(max_params, max_non_embedding_params, max_flops) -> tuple[str, str]:
    given = {"params": max_params, "non_embedding_params": max_non_embedding_params, "flops": max_flops}
    chosen = [(kind, value) for kind, value in given.items() if value is not None]
    if len(chosen) != 1:
        fail("give exactly one budget: --max-params, --max-non-embedding-params or --max-flops")
    kind, text = chosen[0]
    try:
        parse_size(text)
    except (SizingError, ValueError) as error:
        fail(f"invalid budget {text!r}: {error}")
    return kind, text


def plan(
    file: OptionalFile = None,
    dataset: DatasetOption = None,
    max_params: Annotated[str | None, typer.Option(help="Budget on total parameters, e.g. 20M.")] = None,
    max_non_embedding_params: Annotated[str | None, typer.Option(help="Budget on non-embedding parameters.")] = None,
    max_flops: Annotated[str | None, typer.Option(help="Budget on training FLOPs per token, e.g. 50M.")] = None,
    metric: MetricOption = "ndcg@10",
    law: LawOption = None,
    arch: Annotated[str, typer.Option(help="sasrec or llama.")] = "sasrec",
    n_heads: Annotated[int, typer.Option(help="Attention heads; widths must be multiples of it.")] = 1,
    max_len: MaxLenOption = 50,
    layers: Annotated[str | None, typer.Option(help="Layer counts to search, comma-separated.")] = None,
    d_model: Annotated[str | None, typer.Option("--d-model", help="Widths to search, comma-separated.")] = None,
    format: FormatOption = None, separator: SeparatorOption = None, header: HeaderOption = None,
    user_column: UserColumnOption = None, item_column: ItemColumnOption = None, timestamp_column: TimestampColumnOption = None,
    server: ServerOption = None,
    json_output: JsonOption = False,
) -> None:
    """Find the size with the best predicted metric within a budget, and the frontier."""
    budget_kind, budget = _budget_option(max_params, max_non_embedding_params, max_flops)
    grids = {}
    if layers:
        grids["layer_grid"] = _int_list(layers, "--layers")
    if d_model:
        grids["width_grid"] = _int_list(d_model, "--d-model")
    read_options = _read_arguments(format, separator, header, user_column, item_column, timestamp_column)
    if server:
        request = _server_data_request(server, file, dataset, read_options, law, metric, max_len)
        document = client.request_json(server, "POST", "/v1/plans", json={
            **request, "budget": budget, "budget_kind": budget_kind, "arch": arch, "n_heads": n_heads, **grids})
    else:
        data = _offline_data(file, dataset, read_options, max_len, not json_output)
        fitted, description = offline.load_law(law, metric)
        try:
            result = plan_sizes(fitted, data["d_prime"], budget=float(parse_size(budget)), budget_kind=budget_kind,
                                n_items=data["n_items"], arch=arch, max_len=max_len, n_heads=n_heads, **grids)
        except (PlanningError, SizingError) as error:
            fail(str(error))
        document = {"law": description, "data": data, "plan": result.to_dict()}
    if json_output:
        print_json(document)
    else:
        render_plan(document)


def check(
    file: OptionalFile = None,
    dataset: DatasetOption = None,
    layers: Annotated[int, typer.Option(help="Planned number of layers.")] = 2,
    d_model: Annotated[int, typer.Option("--d-model", help="Planned width.")] = 64,
    n_heads: Annotated[int, typer.Option(help="Planned attention heads.")] = 1,
    arch: Annotated[str, typer.Option(help="sasrec or llama.")] = "sasrec",
    minimum: Annotated[float | None, typer.Option("--min", help="Fail when the predicted metric is below this.")] = None,
    max_gap: Annotated[float | None, typer.Option(help="Fail when the best size within the budget predicts more than this above the planned one.")] = None,
    max_params: Annotated[str | None, typer.Option(help="Budget on total parameters; default the planned size's own.")] = None,
    grid_layers: Annotated[str | None, typer.Option(help="Layer counts searched for the best size (for --max-gap).")] = None,
    grid_d_model: Annotated[str | None, typer.Option(help="Widths searched for the best size (for --max-gap).")] = None,
    metric: MetricOption = "ndcg@10",
    law: LawOption = None,
    max_len: MaxLenOption = 50,
    format: FormatOption = None, separator: SeparatorOption = None, header: HeaderOption = None,
    user_column: UserColumnOption = None, item_column: ItemColumnOption = None, timestamp_column: TimestampColumnOption = None,
    server: ServerOption = None,
    json_output: JsonOption = False,
) -> None:
    """Pass or fail a planned size, for CI: exit 0 when it passes, 1 when it fails."""
    read_options = _read_arguments(format, separator, header, user_column, item_column, timestamp_column)
    config = {"n_layers": layers, "d_model": d_model, "n_heads": n_heads, "arch": arch, "max_len": max_len}
    grids = {}
    if grid_layers:
        grids["layer_grid"] = _int_list(grid_layers, "--grid-layers")
    if grid_d_model:
        grids["width_grid"] = _int_list(grid_d_model, "--grid-d-model")
    if server:
        request = _server_data_request(server, file, dataset, read_options, law, metric, max_len)
        document = client.request_json(server, "POST", "/v1/checks", json={
            **request, "config": config, "min_metric": minimum, "max_gap": max_gap, "budget": max_params, **grids})
    else:
        data = _offline_data(file, dataset, read_options, max_len, not json_output)
        fitted, description = offline.load_law(law, metric)
        try:
            budget = float(parse_size(max_params)) if max_params else None
            result = check_config(fitted, data["d_prime"], SizeConfig(**config), n_items=data["n_items"],
                                  min_metric=minimum, max_gap=max_gap, budget=budget, **grids)
        except (PlanningError, SizingError, ValueError) as error:
            fail(str(error))
        document = {**result.to_dict(), "law": description, "data": data}
    if json_output:
        print_json(document)
    else:
        render_check(document)
    raise typer.Exit(EXIT_OK if document["passed"] else EXIT_CHECK_FAILED)


def register(app: typer.Typer) -> None:
    app.command()(profile)
    app.command()(fit)
    app.command()(predict)
    app.command()(plan)
    app.command()(check)
