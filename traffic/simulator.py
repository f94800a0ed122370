"""The traffic simulator: replays the generated future against serving and delivers chargebacks.

Owns: the simulated present while it runs (it advances ``pipelines.data``'s clock), the
chargeback label feed files it appends (``<label_dir>/feed-*.parquet``), daily materialisation
of the online store as the clock crosses midnight UTC (the scheduled ``fraudlab_materialize``
job of ``pipelines.schedules``: skipped while that schedule is paused), and the content of its
progress file (``traffic.progress``: read by ``fraudlab status`` and the container's
healthcheck, used to resume; marked when the simulator exits, so that a reader without a pid
tells a stopped simulator from a running one at once).

Must not: send anything serving would not see in production — never the ``is_fraud``,
``fraud_pattern`` or ``chargeback_timestamp`` columns — or touch the model, the prediction log
or the history part of the label feed.

One request at a time from a single thread, paced by a monotonic schedule: the simulator is
background traffic that must stay cheap on a shared 2-core machine. After a stall (serving
restarting, a materialisation) the schedule restarts instead of bursting to catch up.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from types import FrameType

import httpx
import numpy as np
import pandas as pd

from foundation.settings import Settings
from pipelines import data, schedules
from pipelines.data import REQUEST_COLUMNS
from traffic.progress import mark_stopped, read_state, write_state

TXN_ID, TS = REQUEST_COLUMNS.index("txn_id"), REQUEST_COLUMNS.index("event_timestamp")

log = logging.getLogger("fraudlab.traffic")

PROGRESS_LOG_S = 30.0
PERSIST_EVERY_S = 2.0
LABEL_FLUSH_S = 60.0
MAX_BACKOFF_S = 10.0  # short enough to notice a restarted server within seconds
REQUEST_TIMEOUT_S = 5.0
MATERIALIZE_WAIT_S = 120.0  # longer than a day's materialisation takes here (~5-15 s)
DAY = pd.Timedelta(days=1)


def payload(row: tuple) -> dict:
    """The /score request for one transaction (a row of ``REQUEST_COLUMNS``, in that order)."""
    txn_id, ts, user_id, merchant_id, device_id, amount, channel, ip_region = row
    return {
        "transaction_id": str(txn_id),
        "user_id": int(user_id),
        "merchant_id": int(merchant_id),
        "device_id": int(device_id),
        "amount": float(amount),
        "channel": str(channel),
        "ip_region": str(ip_region),
        "timestamp": pd.Timestamp(ts).isoformat(),
    }


def pending_transactions(settings: Settings, txns: pd.DataFrame) -> pd.DataFrame:
    """Transactions still to replay, in time order, skipping what a previous run sent.

    The clock holds the event time of the last transaction sent; the state file breaks ties
    between transactions that share that timestamp.
    """
    clock = data.read_clock(settings)
    future = txns.loc[txns["event_timestamp"] >= clock, list(REQUEST_COLUMNS)]
    future = future.sort_values(["event_timestamp", "txn_id"], kind="stable")
    state = read_state(settings)
    if state and state.get("clock") == clock.isoformat() and state.get("last_txn_id") is not None:
        done = (future["event_timestamp"] == clock) & (future["txn_id"] <= state["last_txn_id"])
        future = future.loc[~done]
    return future.reset_index(drop=True)


def pending_chargebacks(settings: Settings, txns: pd.DataFrame) -> pd.DataFrame:
    """Chargebacks that arrive after the end of history and are not yet in the label feed.

    Taken from all transactions: a purchase made before 'now' can be charged back after it.
    """
    history_end = pd.Timestamp(data.read_meta(settings)["now"])
    delivered = set(data.read_labels(settings)["txn_id"].tolist())
    due = txns.loc[
        txns["chargeback_timestamp"].notna() & (txns["chargeback_timestamp"] >= history_end),
        ["txn_id", "chargeback_timestamp"],
    ]
    due = due.loc[~due["txn_id"].isin(delivered)]
    return due.sort_values(["chargeback_timestamp", "txn_id"]).reset_index(drop=True)


@dataclass
class Progress:
    """Counters of this run plus totals carried over from earlier runs."""

    sent: int = 0
    errors: int = 0
    labels: int = 0
    sent_before: int = 0
    errors_before: int = 0
    last_txn_id: int | None = None
    last_error: str | None = None
    clock: pd.Timestamp | None = None
    started: float = field(default_factory=time.monotonic)


class LabelFeed:
    """Appends chargebacks whose arrival time the clock has passed, as small parquet files."""

    def __init__(self, settings: Settings, chargebacks: pd.DataFrame) -> None:
        self.settings = settings
        self.txn_ids = chargebacks["txn_id"].to_numpy()
        self.arrivals = chargebacks["chargeback_timestamp"]
        self.arrival_ns = self.arrivals.to_numpy(dtype="datetime64[ns]")
        self.next = 0  # chargebacks before this index are delivered
        self.last_flush = time.monotonic()

    def due(self, clock: pd.Timestamp) -> int:
        """How many undelivered chargebacks have arrived by ``clock``."""
        end = int(
            np.searchsorted(
                self.arrival_ns,
                clock.tz_convert("UTC").tz_localize(None).to_datetime64(),
                side="right",
            )
        )
        return end - self.next

    def flush(self, clock: pd.Timestamp, force: bool = False) -> int:
        """Write the chargebacks due by ``clock`` (at most once a minute unless forced)."""
        n = self.due(clock)
        if n <= 0 or (not force and time.monotonic() - self.last_flush < LABEL_FLUSH_S):
            return 0
        batch = pd.DataFrame(
            {
                "txn_id": self.txn_ids[self.next : self.next + n],
                "chargeback_timestamp": self.arrivals.iloc[self.next : self.next + n].to_numpy(),
            }
        )
        batch["chargeback_timestamp"] = pd.to_datetime(batch["chargeback_timestamp"], utc=True)
        name = f"feed-{clock:%Y%m%dT%H%M%S}-{int(batch['txn_id'].iloc[-1])}.parquet"
        target = self.settings.label_dir / name
        tmp = target.with_suffix(".tmp")  # readers glob *.parquet: never see a partial file
        batch.to_parquet(tmp, index=False)
        tmp.replace(target)
        self.next += n
        self.last_flush = time.monotonic()
        log.info("delivered %d chargebacks up to %s → %s", n, f"{clock:%Y-%m-%d %H:%M}", name)
        return n


class Materializer:
    """Materialises the online store up to each new UTC day in a background thread.

    Feast is imported and the store opened once, on the first boundary (about 6 s), so a
    simulator that never crosses midnight never pays for it. Serving keeps answering from the
    online store meanwhile; a materialisation request that arrives while one runs is merged.
    The replay waits for it (``wait``): the day's batch features are online before the day's
    first purchase, as the nightly job guarantees in production. Without the wait, purchases
    right after midnight would be scored with yesterday's snapshot while training's
    point-in-time join reads today's: skew made by the simulator, not by the system.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = None
        self.target: pd.Timestamp | None = None
        self.done: pd.Timestamp | None = None  # the latest target finished (or given up on)
        self.finished = threading.Condition()
        self.wake = threading.Event()
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, name="materialize", daemon=True)
        self.thread.start()

    def request(self, day_start: pd.Timestamp) -> None:
        if self.target is None or day_start > self.target:
            self.target = day_start
            self.wake.set()

    def wait(self, day_start: pd.Timestamp, timeout_s: float, stop: threading.Event) -> bool:
        """Block until materialisation up to ``day_start`` is done; False on timeout or stop."""
        deadline = time.monotonic() + timeout_s
        with self.finished:
            while self.done is None or self.done < day_start:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or stop.is_set() or not self.thread.is_alive():
                    return False
                self.finished.wait(min(remaining, 0.5))
        return True

    def _loop(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            if self.stopping:
                return
            target = self.target
            if target is None:
                continue
            if not schedules.active(self.settings, schedules.MATERIALIZE):
                # a paused job is skipped, not queued: the next midnight after a resume runs it
                log.info(
                    "nightly materialisation up to %s skipped: schedule %s is paused"
                    " (`fraudlab schedule`)",
                    f"{target:%Y-%m-%d %H:%M}",
                    schedules.MATERIALIZE,
                )
                with self.finished:
                    self.done = target
                    self.finished.notify_all()
                continue
            try:
                from features.store import materialize, open_store

                started = time.monotonic()
                if self.store is None:
                    self.store = open_store(self.settings)
                materialize(self.store, target.to_pydatetime())
                log.info(
                    "materialised online store up to %s (%.1fs)",
                    f"{target:%Y-%m-%d %H:%M}",
                    time.monotonic() - started,
                )
            except Exception:  # traffic must go on; the freshness monitor notices
                log.exception(
                    "materialising up to %s failed; will retry at the next day "
                    "boundary (manual: `fraudlab features`)",
                    target,
                )
            with self.finished:
                self.done = target
                self.finished.notify_all()

    def close(self, timeout: float = 10.0) -> None:
        """Give a running materialisation a moment to finish.

        Bounded below `fraudlab down`'s 15 s grace: state is already persisted by then, and an
        interrupted SQLite write is rolled back, so the next day boundary simply redoes it.
        """
        self.stopping = True
        self.wake.set()
        self.thread.join(timeout)


class Simulator:
    def __init__(self, settings: Settings, rps: float, max_requests: int | None) -> None:
        self.settings = settings
        self.interval = 1.0 / rps
        self.max_requests = max_requests
        self.stop = threading.Event()
        self.progress = Progress()
        self.last_persist = 0.0
        self._persist_lock = threading.Lock()  # fast-forward clients may persist at once

    def handle_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.info(
            "received %s: finishing the current request and stopping", signal.Signals(signum).name
        )
        self.stop.set()

    def persist(self, finished: bool = False) -> None:
        """Advance the clock and the resumable state together (both atomically)."""
        with self._persist_lock:
            self._persist(finished)

    def _persist(self, finished: bool) -> None:
        p = self.progress
        if p.clock is None:
            return
        data.write_clock(self.settings, p.clock)
        state = {
            "clock": p.clock.isoformat(),
            "last_txn_id": p.last_txn_id,
            "sent_total": p.sent_before + p.sent,
            "errors_total": p.errors_before + p.errors,
            "rps": 1.0 / self.interval,
            "updated_at": time.time(),
            "finished": finished,
            "last_error": p.last_error,
        }
        write_state(self.settings, state)  # no stopped_at: this one is running
        self.last_persist = time.monotonic()

    def send(self, client: httpx.Client, body: dict) -> bool:
        """POST one transaction; retry server-side failures with backoff until stopped.

        Returns False when the request was rejected (4xx) or the simulator is stopping.
        """
        backoff = 0.5
        while not self.stop.is_set():
            try:
                response = client.post("/score", json=body)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 400:
                    if self.progress.last_error is not None:
                        log.info("serving answers again")
                        self.progress.last_error = None
                    return True
                if response.status_code < 500:
                    # Bad input is not fixed by retrying: count it and move on.
                    self.progress.errors += 1
                    log.warning(
                        "serving rejected transaction %s: %d %s",
                        body["transaction_id"],
                        response.status_code,
                        response.text[:200],
                    )
                    return False
                problem = f"HTTP {response.status_code}: {response.text[:200]}"
            self.progress.errors += 1
            log.warning(
                "scoring transaction %s failed (%s); retrying in %.1fs",
                body["transaction_id"],
                problem,
                backoff,
            )
            self.progress.last_error = problem
            self.persist()  # `fraudlab status` shows why the replay is not moving
            self.stop.wait(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)
        return False

    def log_progress(self) -> None:
        p = self.progress
        elapsed = time.monotonic() - p.started
        log.info(
            "sent %d (%.1f req/s), errors %d, chargebacks delivered %d, clock %s",
            p.sent,
            p.sent / max(elapsed, 1e-9),
            p.errors,
            p.labels,
            f"{p.clock:%Y-%m-%d %H:%M}" if p.clock is not None else "-",
        )

    def fast_forward(self, until: pd.Timestamp, workers: int) -> int:
        """Replay every transaction up to ``until`` as fast as serving answers, then stop.

        For catching the stack up by hours or days of simulated time (an interviewer's
        scenario that needs a day of traffic, a test). ``workers`` clients send at once; each
        user's purchases stay in order (a user belongs to one worker), midnight still waits for
        the nightly materialisation, and the clock, label feed and state advance per day, so a
        paced replay can resume from where this one stopped. Run it while no paced simulator is
        running (`fraudlab simulate` would replay the same transactions).
        """
        settings = self.settings
        txns = pd.read_parquet(settings.data_dir / "transactions.parquet")
        todo = pending_transactions(settings, txns)
        feed = LabelFeed(settings, pending_chargebacks(settings, txns))
        del txns
        todo = todo.loc[todo["event_timestamp"] <= until]
        state = read_state(settings) or {}
        p = self.progress
        p.sent_before = int(state.get("sent_total", 0))
        p.errors_before = int(state.get("errors_total", 0))
        p.clock = data.read_clock(settings)
        log.info(
            "fast-forwarding %d transactions from %s to %s with %d clients",
            len(todo),
            f"{p.clock:%Y-%m-%d %H:%M}",
            f"{until:%Y-%m-%d %H:%M}",
            workers,
        )
        materializer = Materializer(settings)
        lock = threading.Lock()
        days = todo["event_timestamp"].dt.floor("D")
        try:
            for day, segment in todo.groupby(days, sort=True):
                if self.stop.is_set():
                    break
                if day > p.clock.floor("D"):
                    materializer.request(day)
                    materializer.wait(day, MATERIALIZE_WAIT_S, self.stop)
                rows = list(segment.itertuples(index=False, name=None))
                user = REQUEST_COLUMNS.index("user_id")
                shards = [[r for r in rows if r[user] % workers == w] for w in range(workers)]

                def send_shard(shard: list[tuple]) -> None:
                    with httpx.Client(
                        base_url=settings.serving_base_url, timeout=REQUEST_TIMEOUT_S
                    ) as client:
                        for row in shard:
                            if self.stop.is_set():
                                return
                            if self.send(client, payload(row)):
                                with lock:
                                    p.sent += 1

                threads = [
                    threading.Thread(target=send_shard, args=(shard,), name=f"ff-{w}")
                    for w, shard in enumerate(shards)
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                if self.stop.is_set():
                    break  # a day half sent: the state stays at the last whole day
                last = rows[-1]
                p.clock, p.last_txn_id = pd.Timestamp(last[TS]), int(last[TXN_ID])
                p.labels += feed.flush(p.clock, force=True)
                self.persist()
                self.log_progress()
        finally:
            materializer.close()
        return 0 if not self.stop.is_set() else 1

    def run(self) -> int:
        settings = self.settings
        txns = pd.read_parquet(settings.data_dir / "transactions.parquet")
        todo = pending_transactions(settings, txns)
        feed = LabelFeed(settings, pending_chargebacks(settings, txns))
        del txns
        state = read_state(settings) or {}
        if state and pd.Timestamp(state["clock"]) > data.read_clock(settings):
            state = {}  # the clock went back: data was regenerated, earlier totals are moot
        p = self.progress
        p.sent_before = int(state.get("sent_total", 0))
        p.errors_before = int(state.get("errors_total", 0))
        p.clock = data.read_clock(settings)
        log.info(
            "replaying %d transactions from %s at %.2f req/s against %s%s",
            len(todo),
            f"{p.clock:%Y-%m-%d %H:%M}",
            1.0 / self.interval,
            settings.serving_base_url,
            f" (stopping after {self.max_requests})" if self.max_requests else "",
        )
        self.persist()  # status sees a live simulator before the first request returns
        materializer = Materializer(settings)
        last_log = time.monotonic()
        next_at = time.monotonic()
        finished = False
        with httpx.Client(base_url=settings.serving_base_url, timeout=REQUEST_TIMEOUT_S) as client:
            for row in todo.itertuples(index=False, name=None):
                if self.stop.is_set():
                    break
                if self.max_requests is not None and p.sent >= self.max_requests:
                    log.info("reached max_requests=%d", self.max_requests)
                    break
                ts = pd.Timestamp(row[TS])
                if ts.floor("D") > p.clock.floor("D"):
                    # Midnight passed: yesterday's batch features are now final upstream, and
                    # the nightly job loads them before the new day's first purchase.
                    materializer.request(ts.floor("D"))
                    if not materializer.wait(ts.floor("D"), MATERIALIZE_WAIT_S, self.stop):
                        if self.stop.is_set():
                            break
                        log.warning(
                            "materialisation up to %s not done after %.0fs; replaying on",
                            f"{ts.floor('D'):%Y-%m-%d}",
                            MATERIALIZE_WAIT_S,
                        )
                    next_at = time.monotonic()  # the pause is not a backlog to burst through
                now = time.monotonic()
                if next_at > now:
                    self.stop.wait(next_at - now)
                    if self.stop.is_set():
                        break
                elif now - next_at > 1.0:
                    next_at = now  # stalled: restart the schedule rather than burst
                next_at += self.interval
                if self.send(client, payload(row)):
                    p.sent += 1
                p.clock, p.last_txn_id = ts, int(row[TXN_ID])
                p.labels += feed.flush(p.clock)
                if time.monotonic() - self.last_persist >= PERSIST_EVERY_S:
                    self.persist()
                if time.monotonic() - last_log >= PROGRESS_LOG_S:
                    self.log_progress()
                    last_log = time.monotonic()
            else:
                finished = True
                log.info("end of the replay data: every future transaction has been sent")
        p.labels += feed.flush(p.clock, force=True)
        self.persist(finished=finished)
        materializer.close()
        self.log_progress()
        return 0


def run(
    settings: Settings,
    rps: float,
    max_requests: int | None = None,
    fast_forward_hours: float | None = None,
    workers: int = 4,
) -> int:
    """Replay future traffic at ``rps`` until stopped, ``max_requests`` or the end of the data;
    with ``fast_forward_hours``, replay that much simulated time as fast as serving answers."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every request at INFO: at 5 req/s that buries the simulator's own progress.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # Feast logs a registry refresh per view per materialisation (cache_ttl_seconds: 0).
    logging.getLogger("feast").setLevel(logging.WARNING)
    # ibis (Feast's DuckDB offline store) warns about its own deprecated calls on every view.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ibis\.")
    if rps <= 0:
        log.error("rps must be positive (got %s): `fraudlab simulate --rps 5`", rps)
        return 2
    try:
        data.read_meta(settings)
    except FileNotFoundError as exc:
        log.error("%s", exc)
        return 1
    simulator = Simulator(settings, rps, max_requests)
    signal.signal(signal.SIGTERM, simulator.handle_signal)
    signal.signal(signal.SIGINT, simulator.handle_signal)
    try:
        if fast_forward_hours is not None:
            until = data.read_clock(settings) + pd.Timedelta(hours=fast_forward_hours)
            return simulator.fast_forward(until, max(1, workers))
        return simulator.run()
    finally:
        mark_stopped(settings)
