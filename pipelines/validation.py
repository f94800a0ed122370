"""Data validation with Great Expectations: raw transactions, training sets, logged requests.

Owns: the expectation suites for those three datasets (built in code, run on an ephemeral
context, nothing written to disk), the typed result of a validation, the one-line messages a
person acts on, and ``DataValidationError``, which stops a retrain before anything is fitted.
Must not: fix or drop data (a failed check is reported, never papered over), define features
or vocabularies (they come from ``features.transforms``, the contract training and serving
share), or read the prediction log files' layout beyond a record's fields.

Great Expectations takes seconds to import, so it is imported only when a suite runs: the CLI,
serving and DAG parsing import this module for free.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd

from features.transforms import CHANNELS, MERCHANT_CATEGORIES, REGIONS, STORED_FEATURES
from foundation.settings import Settings
from model.record import COLUMNS as RECORD_COLUMNS
from model.record import PredictionRecord
from pipelines.data import REQUEST_COLUMNS, read_raw

# A fraud rate outside this band is not a fraud problem but a labelling one (no chargebacks
# joined, or every transaction labelled): the model would learn nothing or nonsense.
FRAUD_RATE_BOUNDS = (1 / 5000, 1 / 20)
# Key stored features may be missing for a brand-new user or merchant, but not for many rows:
# more than this share missing means a feature table or the point-in-time join broke.
MAX_NULL_SHARE = 0.05
# Row volume versus what the configured world should produce: generous, because activity is
# random and some users sign up during the window, yet tight enough to catch a halved feed.
VOLUME_TOLERANCE = (0.5, 1.5)
# Stored features that are counts, sums or spreads: negative values are impossible.
NON_NEGATIVE_FEATURES = (
    "user_txn_count_1d",
    "user_txn_count_7d",
    "user_amount_mean_30d",
    "user_amount_std_30d",
    "user_chargeback_count_90d",
    "merchant_txn_count_7d",
    "merchant_amount_mean_30d",
    "user_device_txn_count_30d",
    "velocity_1h",
    "small_velocity_1h",
)
# One feature from each feature table the model leans on (profile, user and merchant stats):
# healthy training sets miss them for ~1 % of rows (new users), a broken table for most rows.
KEY_FEATURES = (
    "signup_ts",
    "home_region",
    "merchant_category",
    "user_txn_count_7d",
    "merchant_txn_count_7d",
)
SPLITS = ("train", "valid", "test")
DECISIONS = ("approve", "decline")

FEED = "check the upstream transaction feed"
JOIN = "check the feature tables and the point-in-time join (`fraudlab features`)"
LABELS = "check the chargeback label feed and the label maturity window"
SERVING = "check the serving request validation and the model bundle"


class WorldSize(Protocol):
    """What the expected volume depends on; ``Settings`` and ``WorldConfig`` both have it."""

    n_users: int
    txns_per_user_day: float
    fraud_rate: float


@dataclass(frozen=True)
class ValidationResult:
    """The outcome of one suite on one dataset."""

    dataset: str
    passed: bool
    n_rows: int
    n_checks: int
    failures: tuple[str, ...]  # one line per failed expectation, for a person to act on
    seconds: float

    def summary(self) -> str:
        verdict = "passed" if self.passed else f"FAILED {len(self.failures)}"
        return f"{self.dataset}: {verdict} of {self.n_checks} checks on {self.n_rows:,} rows"


class DataValidationError(RuntimeError):
    """Data failed validation; raised so that a retrain stops before fitting."""

    def __init__(self, results: Sequence[ValidationResult]) -> None:
        self.results = tuple(results)
        lines = [f"  - {m}" for r in self.results for m in r.failures]
        super().__init__(
            "data validation failed, the model was not trained:\n"
            + "\n".join(lines)
            + "\nFix the data (or regenerate it: `fraudlab data`), then retrain."
        )


@dataclass(frozen=True)
class _Check:
    """An expectation plus the words a failure message needs."""

    expectation: Any
    column: str | None  # None for table-level checks
    broken: str  # what a violating value is, e.g. "values <= 0"
    expected: str  # what was expected, e.g. "> 0"
    action: str  # what to do next


def expected_transactions(world: WorldSize, days: float) -> tuple[int, int]:
    """Bounds on the number of transactions ``days`` of this world should contain."""
    mean = world.n_users * world.txns_per_user_day * days / (1 - world.fraud_rate)
    return int(mean * VOLUME_TOLERANCE[0]), int(mean * VOLUME_TOLERANCE[1]) + 1


# --- suites -------------------------------------------------------------------------------


def _request_checks(
    gxe: Any, max_amount: float, timestamp: str, id_columns: Sequence[str]
) -> list[_Check]:
    """What every transaction must satisfy, wherever it shows up (feed, training set, log)."""
    checks = [
        _Check(gxe.ExpectColumnValuesToNotBeNull(column=c), c, "nulls", "an id", FEED)
        for c in id_columns
    ]
    checks += [
        _Check(
            gxe.ExpectColumnValuesToNotBeNull(column=timestamp),
            timestamp,
            "nulls",
            "a timestamp",
            FEED,
        ),
        _Check(
            gxe.ExpectColumnValuesToNotBeNull(column="amount"),
            "amount",
            "nulls",
            "an amount",
            FEED,
        ),
        _Check(
            gxe.ExpectColumnValuesToBeBetween(column="amount", min_value=0, strict_min=True),
            "amount",
            "values <= 0",
            "> 0",
            FEED,
        ),
        _Check(
            gxe.ExpectColumnValuesToBeBetween(column="amount", max_value=max_amount),
            "amount",
            f"values above {max_amount:,.0f}",
            f"<= {max_amount:,.0f}",
            FEED,
        ),
    ]
    for column, vocabulary in (("channel", CHANNELS), ("ip_region", REGIONS)):
        checks += [
            _Check(
                gxe.ExpectColumnValuesToNotBeNull(column=column),
                column,
                "nulls",
                f"one of {', '.join(vocabulary)}",
                FEED,
            ),
            _Check(
                gxe.ExpectColumnValuesToBeInSet(column=column, value_set=list(vocabulary)),
                column,
                "values outside the vocabulary",
                f"one of {', '.join(vocabulary)}",
                FEED,
            ),
        ]
    return checks


def _columns_exist(gxe: Any, columns: Iterable[str], action: str) -> list[_Check]:
    return [_Check(gxe.ExpectColumnToExist(column=c), c, "", "", action) for c in columns]


def _transaction_checks(
    gxe: Any, max_amount: float, expected_rows: tuple[int, int] | None
) -> list[_Check]:
    checks = _columns_exist(gxe, REQUEST_COLUMNS, FEED)
    checks += _request_checks(
        gxe, max_amount, "event_timestamp", ("txn_id", "user_id", "merchant_id", "device_id")
    )
    checks.append(
        _Check(
            gxe.ExpectColumnValuesToBeUnique(column="txn_id"),
            "txn_id",
            "duplicated ids",
            "unique",
            FEED,
        )
    )
    if expected_rows is not None:
        low, high = expected_rows
        checks.append(
            _Check(
                gxe.ExpectTableRowCountToBeBetween(min_value=low, max_value=high),
                None,
                "",
                f"{low:,}..{high:,} for the configured world",
                FEED,
            )
        )
    return checks


def _training_checks(gxe: Any, max_amount: float) -> list[_Check]:
    checks = _transaction_checks(gxe, max_amount, expected_rows=None)
    checks += _columns_exist(gxe, (*STORED_FEATURES, "label", "split"), JOIN)
    checks += [
        _Check(gxe.ExpectTableRowCountToBeBetween(min_value=1), None, "", "at least 1", JOIN),
        _Check(
            gxe.ExpectColumnValuesToNotBeNull(column="label"), "label", "nulls", "0 or 1", LABELS
        ),
        _Check(
            gxe.ExpectColumnValuesToBeInSet(column="label", value_set=[0, 1]),
            "label",
            "values other than 0 and 1",
            "0 or 1",
            LABELS,
        ),
        _Check(
            gxe.ExpectColumnMeanToBeBetween(
                column="label", min_value=FRAUD_RATE_BOUNDS[0], max_value=FRAUD_RATE_BOUNDS[1]
            ),
            "label",
            "",
            f"a fraud rate between 1/{1 / FRAUD_RATE_BOUNDS[0]:,.0f} and "
            f"1/{1 / FRAUD_RATE_BOUNDS[1]:,.0f}",
            LABELS,
        ),
        _Check(
            gxe.ExpectColumnDistinctValuesToEqualSet(column="split", value_set=list(SPLITS)),
            "split",
            "",
            "exactly train, valid and test",
            "check `split_by_time` and the training window (enough days of matured labels?)",
        ),
    ]
    checks += [
        _Check(
            gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0),
            c,
            "values < 0",
            ">= 0",
            JOIN,
        )
        for c in NON_NEGATIVE_FEATURES
    ]
    checks.append(
        _Check(
            gxe.ExpectColumnValuesToBeBetween(
                column="merchant_chargeback_rate_30d", min_value=0, max_value=1
            ),
            "merchant_chargeback_rate_30d",
            "values outside [0, 1]",
            "a rate in [0, 1]",
            JOIN,
        )
    )
    # Categorical features may be null (an unknown entity gets the transform's default), but a
    # value outside the vocabulary would be encoded as unknown without anyone noticing.
    for column, vocabulary in (
        ("home_region", REGIONS),
        ("merchant_category", MERCHANT_CATEGORIES),
    ):
        checks.append(
            _Check(
                gxe.ExpectColumnValuesToBeInSet(column=column, value_set=list(vocabulary)),
                column,
                "values outside the vocabulary",
                "one of the model's vocabulary or null",
                JOIN,
            )
        )
    checks += [
        _Check(
            gxe.ExpectColumnValuesToNotBeNull(column=c, mostly=1 - MAX_NULL_SHARE),
            c,
            "nulls",
            f"at most {MAX_NULL_SHARE:.0%} nulls",
            JOIN,
        )
        for c in KEY_FEATURES
    ]
    return checks


def _logged_request_checks(gxe: Any, max_amount: float) -> list[_Check]:
    # every column of the flattened log (``LOG_COLUMNS``, derived from the record's schema)
    columns = LOG_COLUMNS
    checks = _columns_exist(gxe, columns, SERVING)
    checks.append(
        _Check(
            gxe.ExpectTableRowCountToBeBetween(min_value=1),
            None,
            "",
            "at least 1",
            "check that serving is receiving traffic and writing its prediction log",
        )
    )
    checks += _request_checks(
        gxe, max_amount, "event_ts", ("transaction_id", "user_id", "merchant_id", "device_id")
    )
    checks += [
        _Check(
            gxe.ExpectColumnValuesToNotBeNull(column="score"),
            "score",
            "nulls",
            "a score in [0, 1]",
            SERVING,
        ),
        _Check(
            gxe.ExpectColumnValuesToBeBetween(column="score", min_value=0, max_value=1),
            "score",
            "values outside [0, 1]",
            "a probability in [0, 1]",
            SERVING,
        ),
        _Check(
            gxe.ExpectColumnValuesToBeInSet(column="decision", value_set=list(DECISIONS)),
            "decision",
            "values other than approve/decline",
            "approve or decline",
            SERVING,
        ),
        _Check(
            gxe.ExpectColumnValuesToNotBeNull(column="decision"),
            "decision",
            "nulls",
            "approve or decline",
            SERVING,
        ),
        _Check(
            gxe.ExpectColumnValuesToNotBeNull(column="model_version"),
            "model_version",
            "nulls",
            "the version of the model that scored",
            SERVING,
        ),
    ]
    return checks


# --- public entry points ------------------------------------------------------------------


def validate_transactions(
    frame: pd.DataFrame, max_amount: float, expected_rows: tuple[int, int] | None = None
) -> ValidationResult:
    """The raw transaction feed: schema, ids, amounts, vocabularies, timestamps, volume."""
    _, gxe = _gx()
    return _run("raw transactions", frame, _transaction_checks(gxe, max_amount, expected_rows))


def validate_training_set(frame: pd.DataFrame, max_amount: float) -> ValidationResult:
    """A training set (request columns, stored features, label, split)."""
    _, gxe = _gx()
    return _run("training set", frame, _training_checks(gxe, max_amount))


# The flattened log: every scalar field of the typed record, then the request fields the
# request-quality suite checks. Derived from the schema, so a field added there arrives here.
_NESTED_FIELDS = ("request", "features", "model_inputs")
_REQUEST_FIELDS = ("amount", "channel", "ip_region")
_RECORD_FIELDS = tuple(name for name in RECORD_COLUMNS if name not in _NESTED_FIELDS)
LOG_COLUMNS = (*_RECORD_FIELDS, *_REQUEST_FIELDS)


def flatten_prediction_log(records: Iterable[PredictionRecord]) -> pd.DataFrame:
    """Prediction-log records (``model.record``) as one row per request."""
    rows = [
        {
            **{name: getattr(record, name) for name in _RECORD_FIELDS},
            **{name: record.request.get(name) for name in _REQUEST_FIELDS},
        }
        for record in records
    ]
    frame = pd.DataFrame(rows, columns=list(LOG_COLUMNS))
    # JSON nulls make object columns; numbers must be numbers for range checks to apply.
    for column in ("amount", "score", "threshold", "event_ts"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame


def validate_logged_requests(
    records: Iterable[PredictionRecord] | pd.DataFrame, max_amount: float
) -> ValidationResult:
    """Scored requests from the prediction log (records, or a frame already flattened)."""
    frame = records if isinstance(records, pd.DataFrame) else flatten_prediction_log(records)
    _, gxe = _gx()
    return _run("logged requests", frame, _logged_request_checks(gxe, max_amount))


def validate_raw_window(
    settings: Settings, start: pd.Timestamp, end: pd.Timestamp
) -> ValidationResult:
    """The raw transaction feed between ``start`` and ``end`` (the training window)."""
    txns = read_raw(settings, "transactions")
    window = txns[(txns["event_timestamp"] >= start) & (txns["event_timestamp"] < end)]
    days = (end - start) / pd.Timedelta(days=1)
    return validate_transactions(
        window[list(REQUEST_COLUMNS)], settings.max_amount, expected_transactions(settings, days)
    )


def check_before_training(
    settings: Settings,
    training_frame: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> list[ValidationResult]:
    """Validate the raw feed's training window and the training set; raise if either fails."""
    results = [
        validate_raw_window(settings, start, end),
        validate_training_set(training_frame, settings.max_amount),
    ]
    if not all(r.passed for r in results):
        raise DataValidationError(results)
    return results


# --- running a suite ----------------------------------------------------------------------


def _gx() -> tuple[Any, Any]:
    # GX logs hundreds of INFO lines about its own API registry on import: in an Airflow task
    # log (which keeps INFO) they bury the validation result a person came to read.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx
    import great_expectations.expectations as gxe

    return gx, gxe


def _run(dataset: str, frame: pd.DataFrame, checks: list[_Check]) -> ValidationResult:
    """Validate ``frame`` against ``checks`` and turn each failure into a message."""
    from great_expectations.data_context.types.base import ProgressBarsConfig

    gx, _ = _gx()
    started = time.perf_counter()
    # A fresh ephemeral context per run: nothing on disk, no name clashes between runs.
    context = gx.get_context(mode="ephemeral")
    # tqdm bars would interleave with the CLI's own progress lines and DAG task logs.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    suite = gx.ExpectationSuite(name=dataset)
    for index, check in enumerate(checks):
        # ids are only assigned when a suite is saved; the meta travels with each result
        check.expectation.meta = {"check": index}
        suite.add_expectation(check.expectation)
    asset = context.data_sources.add_pandas("frames").add_dataframe_asset(dataset)
    batch = asset.add_batch_definition_whole_dataframe("all").get_batch(
        batch_parameters={"dataframe": frame}
    )
    # BASIC keeps counts and a sample of bad values but skips index lists: ~2x faster
    outcome = batch.validate(suite, result_format="BASIC")

    missing = {ch.column for ch in checks if ch.column and ch.column not in frame.columns}
    failures: list[str] = []
    for result in outcome.results:
        if result.success:
            continue
        check = checks[int(result.expectation_config.meta["check"])]
        raised = bool((result.exception_info or {}).get("raised_exception"))
        if check.column in missing and check.expected:
            continue  # "column is missing" is reported once, by its existence check
        failures.append(_message(dataset, check, dict(result.result), raised, result))
    return ValidationResult(
        dataset=dataset,
        passed=not failures,
        n_rows=len(frame),
        n_checks=len(checks),
        failures=tuple(failures),
        seconds=time.perf_counter() - started,
    )


def _message(
    dataset: str, check: _Check, result: Mapping[str, Any], raised: bool, raw: Any
) -> str:
    """One line: which column, what broke, how many rows, what was expected, what to do."""
    subject = f"column {check.column}" if check.column else "table"
    if raised:
        reason = (raw.exception_info or {}).get("exception_message") or "unknown error"
        return f"{dataset}: could not check {subject}: {reason} — {check.action}"
    if not check.expected:  # an existence check
        return f"{dataset}: column {check.column} is missing — {check.action}"
    if "unexpected_count" in result:
        count = int(result["unexpected_count"])
        total = int(result.get("element_count") or 0)
        share = f" ({_share(count, total)} of {total:,} rows)" if total else ""
        sample = [v for v in result.get("partial_unexpected_list") or [] if not _isnull(v)]
        example = (
            f"; e.g. {', '.join(repr(v) for v in dict.fromkeys(sample[:20]))}" if (sample) else ""
        )
        example = example if len(example) < 80 else example[:77] + "..."
        return (
            f"{dataset}: {subject} has {count:,} {check.broken}{share} "
            f"(expected {check.expected}{example}) — {check.action}"
        )
    observed = result.get("observed_value")
    if check.column is None:
        observed_text = f"has {observed:,} rows" if isinstance(observed, int) else "failed"
    elif isinstance(observed, float):
        observed_text = f"averages {observed:.5f}"
    elif isinstance(observed, Iterable) and not isinstance(observed, str):
        observed_text = f"has {sorted(map(str, observed))}"
    else:
        observed_text = f"is {observed!r}"
    return f"{dataset}: {subject} {observed_text} (expected {check.expected}) — {check.action}"


def _isnull(value: object) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _share(count: int, total: int) -> str:
    # "0.0%" would read as "nothing broke" in a message that says something did
    share = count / total
    return f"{share:.1%}" if share >= 0.001 else "<0.1%"
