"""Resolve a model that is not in the built-in catalog from the Hugging Face Hub (or a mirror of it).

For clusters with network access: ``config.json`` and ``preprocessor_config.json`` come through ``huggingface_hub``'s
downloader, and the exact parameter count from the safetensors headers (``HfApi.get_safetensors_metadata``, which
reads only each shard's header with a ranged GET, never the weights). Everything else is the same parsing the local
directory reader does (``models.local.facts_from_files``).

Caching, in two layers:
- on disk, one JSON record per (endpoint, model, revision) with the two config files and the parameter count. A
  revision that is a commit hash never changes, so its record never expires; a branch or tag is re-read after
  ``ttl_s``. With ``offline`` (or ``HF_HUB_OFFLINE=1``) any cached record is used and nothing is fetched;
- in memory, the parsed facts, and failures for ``negative_ttl_s`` so that a webhook or a reconcile loop does not
  retry an unreachable Hub on every call.

``huggingface_hub`` is an optional dependency (``pip install 'vlm-operator[hub]'``); it is imported on first use,
so ``vlmctl estimate`` for a catalog model never loads it.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlm_operator.models.facts import ModelFacts
from vlm_operator.models.hf_config import ConfigError
from vlm_operator.models.local import facts_from_files

DEFAULT_ENDPOINT = "https://huggingface.co"
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
#: ``org/name`` as the Hub accepts it (huggingface_hub ``validate_repo_id``: letters, digits, ``-_.``, <= 96 chars)
_REPO_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})?$")
_RECORD_VERSION = 1


class HubError(ConfigError):
    """The Hub could not tell us about the model; the message names the model, the endpoint and a fix."""


class _TransportError(HubError):
    """A connection broke mid-request. huggingface_hub closes its one shared HTTP client when any request meets a
    connection error (utils/_http.py ``close_session``), which cuts the requests other threads have in flight; one
    retry of the whole lookup gets past that."""


def default_cache_dir() -> Path:
    root = os.environ.get("VLM_OPERATOR_HUB_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vlm-operator" / "hub"


def _env_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class HubSettings:
    #: the Hub or a mirror; default ``$HF_ENDPOINT`` or https://huggingface.co
    endpoint: str | None = None
    #: an access token for gated or private models; None lets huggingface_hub use ``$HF_TOKEN`` or its saved token
    token: str | None = None
    cache_dir: Path | None = None
    #: never touch the network; use only what the disk cache holds
    offline: bool = False
    #: seconds to wait on each request
    timeout_s: float = 10.0
    #: how long a record for a branch or tag (not a commit) stays fresh
    ttl_s: float = 24 * 3600.0
    #: how long a failure is remembered before the Hub is asked again
    negative_ttl_s: float = 60.0
    #: the most a caller waits (None: as long as the client's own retries take, up to a minute). With a deadline the
    #: fetch goes on in the background and fills the cache, so an admission webhook never waits on a slow Hub.
    deadline_s: float | None = None

    def resolved_endpoint(self) -> str:
        return (self.endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


@dataclass(frozen=True)
class _Record:
    commit: str | None
    config: dict[str, Any]
    preprocessor: dict[str, Any]
    counted_params: int | None
    index_total_size: int | None
    fetched_at: float


@dataclass
class HubResolver:
    """Resolves ``model id (+ revision)`` to :class:`ModelFacts`; safe to share between threads."""

    settings: HubSettings = field(default_factory=HubSettings)
    clock: Callable[[], float] = time.time
    _memory: dict[tuple[str, str, str], tuple[float, ModelFacts | HubError]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _inflight: dict[tuple[str, str, str], concurrent.futures.Future[ModelFacts]] = field(default_factory=dict)
    #: requests this resolver sent to the Hub (for operators' metrics and for tests)
    fetches: int = 0

    # -- public ---------------------------------------------------------------------------------------------------
    def resolve(self, model_id: str, revision: str | None = None, *, endpoint: str | None = None) -> ModelFacts:
        model_id = model_id.strip()
        if not _REPO_RE.match(model_id):
            raise HubError(
                f"model {model_id!r} is not a Hugging Face repo id; use 'org/name' (e.g. Qwen/Qwen2.5-VL-7B-Instruct)"
            )
        ep = (endpoint or self.settings.resolved_endpoint()).rstrip("/")
        rev = revision or "main"
        key = (ep, model_id, rev)
        now = self.clock()
        with self._lock:
            hit = self._memory.get(key)
        if hit is not None:
            at, value = hit
            if isinstance(value, HubError):
                if now - at < self.settings.negative_ttl_s:
                    raise value
            elif _COMMIT_RE.match(rev) or now - at < self.settings.ttl_s:
                return value
        deadline = self.settings.deadline_s
        if deadline is None:
            return self._resolve_now(key, now)
        with self._lock:
            future = self._inflight.get(key)
            if future is None:
                future = concurrent.futures.Future()
                self._inflight[key] = future
                # a daemon thread, not an executor: a Hub that keeps retrying must not hold up the process's exit
                threading.Thread(target=self._run_into, args=(future, key, now), name="vlm-hub", daemon=True).start()
        try:
            return future.result(timeout=deadline)
        except concurrent.futures.TimeoutError:
            stale = self._load(self._cache_file(ep, model_id, rev))
            if stale is not None:  # serve the last answer while the refresh goes on
                return self._facts(key, stale)
            raise HubError(
                f"{model_id}@{rev} on {ep}: no answer within {deadline:g}s; the lookup goes on in the background "
                "and the next check uses its answer"
            ) from None

    def _run_into(self, future: concurrent.futures.Future[ModelFacts], key: tuple[str, str, str], now: float) -> None:
        try:
            future.set_result(self._resolve_now(key, now))
        except BaseException as exc:
            future.set_exception(exc)
        finally:
            self._done(key)

    def _facts(self, key: tuple[str, str, str], record: _Record) -> ModelFacts:
        ep, model_id, rev = key
        return facts_from_files(
            record.config,
            record.preprocessor,
            model_id=model_id,
            source=f"{ep}/{model_id}" + (f"@{record.commit}" if record.commit else f"@{rev}"),
            counted_params=record.counted_params,
            index_total_size=record.index_total_size,
        )

    def _done(self, key: tuple[str, str, str]) -> None:
        with self._lock:
            self._inflight.pop(key, None)

    def lookups_in_flight(self) -> int:
        """Lookups that outlived their caller's deadline and still run in the background."""
        with self._lock:
            return len(self._inflight)

    def _resolve_now(self, key: tuple[str, str, str], now: float) -> ModelFacts:
        ep, model_id, rev = key
        try:
            facts = self._facts(key, self._record(ep, model_id, rev, now))
        except HubError as exc:
            with self._lock:
                self._memory[key] = (now, exc)
            raise
        except ConfigError as exc:  # a config.json the parser cannot use
            err = HubError(f"{model_id} on {ep}: {exc}")
            with self._lock:
                self._memory[key] = (now, err)
            raise err from None
        with self._lock:
            self._memory[key] = (now, facts)
        return facts

    # -- disk cache -----------------------------------------------------------------------------------------------
    def _cache_file(self, endpoint: str, model_id: str, revision: str) -> Path:
        root = self.settings.cache_dir or default_cache_dir()
        ep = hashlib.sha256(endpoint.encode()).hexdigest()[:12]
        safe_rev = re.sub(r"[^A-Za-z0-9_.-]", "_", revision)
        return root / ep / model_id.replace("/", "--") / f"{safe_rev}.json"

    def _load(self, path: Path) -> _Record | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") != _RECORD_VERSION:
                return None
            return _Record(
                commit=data.get("commit"),
                config=dict(data["config"]),
                preprocessor=dict(data.get("preprocessor") or {}),
                counted_params=data.get("counted_params"),
                index_total_size=data.get("index_total_size"),
                fetched_at=float(data["fetched_at"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _store(self, path: Path, record: _Record) -> None:
        data = {"version": _RECORD_VERSION, **record.__dict__}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}.{threading.get_ident()}")
            tmp.write_text(json.dumps(data, sort_keys=True), encoding="utf-8")
            tmp.replace(path)
        except OSError:
            pass  # a read-only cache only costs a refetch next time

    def _record(self, endpoint: str, model_id: str, revision: str, now: float) -> _Record:
        path = self._cache_file(endpoint, model_id, revision)
        cached = self._load(path)
        offline = self.settings.offline or _env_offline()
        if cached is not None and (
            offline or _COMMIT_RE.match(revision) or now - cached.fetched_at < self.settings.ttl_s
        ):
            return cached
        if offline:
            raise HubError(
                f"{model_id}@{revision} is not in the Hub cache ({path.parent}) and offline mode is on; "
                "fix: resolve it once with network access, or use --model-dir with a local copy"
            )
        try:
            try:
                record = self._fetch(endpoint, model_id, revision, now)
            except _TransportError:
                record = self._fetch(endpoint, model_id, revision, now)
        except HubError:
            if cached is not None:  # a stale record beats no answer when the Hub is down
                return cached
            raise
        self._store(path, record)
        return record

    # -- network --------------------------------------------------------------------------------------------------
    def _fetch(self, endpoint: str, model_id: str, revision: str, now: float) -> _Record:
        try:
            import huggingface_hub as hh
            from huggingface_hub import errors as hf_errors
        except ImportError:
            raise HubError(
                f"{model_id!r} is not in the built-in catalog and huggingface_hub is not installed to look it up; "
                "fix: pip install 'vlm-operator[hub]', or use --model-dir with a local copy"
            ) from None
        from huggingface_hub.utils.tqdm import disable_progress_bars

        disable_progress_bars()  # download bars would interleave with the operator's log and the CLI's table
        api = hh.HfApi(endpoint=endpoint, token=self.settings.token)
        where = f"{model_id}@{revision} on {endpoint}"
        files_dir = (self.settings.cache_dir or default_cache_dir()) / "files"
        timeout = self.settings.timeout_s

        snapshot: list[str] = []

        def download(filename: str) -> dict[str, Any] | None:
            self.fetches += 1
            try:
                local = api.hf_hub_download(
                    model_id, filename, revision=revision, cache_dir=files_dir, etag_timeout=timeout
                )
            except hf_errors.LocalEntryNotFoundError:
                raise  # not "the file does not exist": the Hub could not be reached and nothing is cached
            except hf_errors.EntryNotFoundError:
                return None
            # the downloader files it under snapshots/<commit>/: that is the commit the revision resolved to
            snapshot.append(Path(local).parent.name)
            data = json.loads(Path(local).read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise HubError(f"{where}: {filename} is not a JSON object")
            return data

        try:
            config = download("config.json")
            if config is None:
                raise HubError(f"{where} has no config.json; fix: check model.name (is it a model repository?)")
            preprocessor = download("preprocessor_config.json") or {}
            commit = snapshot[0] if snapshot and _COMMIT_RE.match(snapshot[0]) else None
            counted: int | None = None
            index_total: int | None = None
            self.fetches += 1
            try:
                meta = api.get_safetensors_metadata(model_id, revision=revision, timeout=timeout)
                counted = sum(meta.parameter_count.values()) or None
                if meta.metadata and isinstance(meta.metadata.get("total_size"), int):
                    index_total = int(meta.metadata["total_size"])
            except hf_errors.NotASafetensorsRepoError:
                pass  # .bin-only checkpoints: fall back to the architecture's parameter count
            except hf_errors.SafetensorsParsingError as exc:
                raise HubError(f"{where}: cannot parse a safetensors header: {exc}") from None
        except HubError:
            raise
        except hf_errors.GatedRepoError:
            raise HubError(
                f"{where} is gated: accept its licence on the Hub, then give the operator a token "
                "(HF_TOKEN, or --hf-token for vlmctl)"
            ) from None
        except hf_errors.RepositoryNotFoundError:
            raise HubError(
                f"{where}: no such model (or it is private); fix: check model.name, or set a token that can read it"
            ) from None
        except hf_errors.RevisionNotFoundError:
            raise HubError(f"{where}: revision {revision!r} does not exist; fix: check model.revision") from None
        except hf_errors.OfflineModeIsEnabled:
            raise HubError(f"{where}: HF_HUB_OFFLINE is set and the files are not cached") from None
        except hf_errors.LocalEntryNotFoundError as exc:  # the downloader's wrapper for "no answer, nothing cached"
            raise HubError(f"{where}: {_cause(exc, hf_errors.HfHubHTTPError)}") from None
        except hf_errors.HfHubHTTPError as exc:
            raise HubError(f"{where}: the Hub answered {_first_line(exc)}") from None
        except ValueError as exc:  # a file that is not JSON
            raise HubError(f"{where}: {type(exc).__name__}: {_first_line(exc)}") from None
        except Exception as exc:  # the HTTP client's own errors (connection reset, timeouts): never crash a caller
            raise _TransportError(f"{where}: cannot reach the Hub ({type(exc).__name__}: {_first_line(exc)})") from None
        return _Record(commit, config, preprocessor, counted, index_total, now)


def _cause(exc: BaseException, http_error: type[BaseException]) -> str:
    """What really went wrong under huggingface_hub's "cannot find the requested files" wrapper."""
    seen: BaseException | None = exc.__cause__ or exc.__context__
    while seen is not None:
        if isinstance(seen, http_error):
            return f"the Hub answered {_first_line(seen)}"
        if isinstance(seen, OSError | TimeoutError) or "Connect" in type(seen).__name__:
            return f"cannot reach the Hub ({type(seen).__name__}: {_first_line(seen)})"
        seen = seen.__cause__ or seen.__context__
    return f"cannot reach the Hub ({_first_line(exc)})"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
