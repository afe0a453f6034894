"""The Python client: Tollgate from a notebook or a script, the same calls the CLI makes.

    from tollgate import Client

    tg = Client()                                   # the running local cloud, or GOOGLE_CLOUD_PROJECT + TOLLGATE_BUCKET
    run = tg.drop("batch.csv", "chicago_taxi")      # upload, wait for the decision
    tg.runs("chicago_taxi"); tg.models("chicago_taxi"); tg.history("chicago_taxi")
    model = tg.load_model("chicago_taxi")           # the champion, hash-checked, through the artifact allow-list
    tg.predict("chicago_taxi", frame)               # DataFrame in, DataFrame out (identity token on GCP)

Every answer is plain data (the CLI's ``--json``), every refusal a :class:`ClientError` that says what to do.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from tollgate import lifecycle
from tollgate.cloud import Adapters
from tollgate.settings import Settings, SettingsError

if TYPE_CHECKING:
    import pandas as pd

EXPLAINED_PER_REQUEST = 100   # the predictor's explanation route takes at most this many instances


class ClientError(RuntimeError):
    """What the client could not do, and why."""


def home() -> Path:
    """The local cloud's folder: ``$TOLLGATE_HOME``, ``./.tollgate`` if it exists, or the repository's."""
    if os.environ.get("TOLLGATE_HOME"):
        return Path(os.environ["TOLLGATE_HOME"])
    from tollgate.topology import ROOT

    local = Path.cwd() / ".tollgate"
    return local if local.exists() else ROOT / ".tollgate"


def local_cloud(echo: Callable[[str], None] | None = None) -> Any:
    """The local cloud of :func:`home` (running or not)."""
    from localcloud.cloud import LocalCloud

    return LocalCloud(home(), echo=echo or (lambda m: None))


def identity_token(audience: str) -> str:
    """An identity token for a Cloud Run URL (Cloud Run IAM checks it): from the application default
    credentials of a service account, else from the gcloud CLI's logged-in user."""
    try:
        import google.auth.transport.requests
        from google.oauth2 import id_token

        return id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)
    except Exception:
        import subprocess

        try:
            done = subprocess.run(["gcloud", "auth", "print-identity-token"], capture_output=True, text=True)
        except FileNotFoundError:
            raise ClientError(f"no identity token for {audience}: install the gcloud CLI and run "
                              "`gcloud auth login`, or use a service account's credentials") from None
        if done.returncode != 0:
            raise ClientError(f"no identity token for {audience}: {done.stderr.strip()}") from None
        return done.stdout.strip()


TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ALIAS = re.compile(r"[a-z][a-z0-9_-]{0,39}")
RESERVED_ALIASES = ("champion", "canary", "shadow", "latest")


def actor() -> str:
    """Who runs this: ``$TOLLGATE_ACTOR``, else the login."""
    import getpass

    try:
        return os.environ.get("TOLLGATE_ACTOR") or getpass.getuser()
    except (KeyError, OSError):
        return "local user"


class Client(Adapters):
    """Tollgate's runs, models, ledger and predictors: on the running local cloud (``.tollgate/`` or
    ``$TOLLGATE_HOME``), else (and with ``TOLLGATE_TARGET=gcp``) the project in ``GOOGLE_CLOUD_PROJECT`` with the
    bucket in ``TOLLGATE_BUCKET``."""

    def __init__(self) -> None:
        super().__init__()
        self.local = False   # set by settings(): the local cloud, whose services need no identity token

    def settings(self) -> Settings:
        """Where the client points: the running local cloud (its environment is taken on), else the environment's
        project; a ClientError when neither is there."""
        local = local_cloud()
        if os.environ.get("TOLLGATE_TARGET") != "gcp" and local.running():
            local.attach()
            os.environ.update(local.env())
            self.local = True
        try:
            return Settings.from_env()
        except SettingsError as exc:
            raise ClientError(f"no local cloud is running (start one with `make up`) and {exc}") from exc

    def id_token(self, audience: str, name: str | None = None) -> str:
        """An ID token for ``audience`` (a function's URL) naming the caller: on the local cloud signed by it, for
        ``name`` (default :func:`actor`); on Google Cloud Google's, for whoever the credentials are (``name``
        cannot change who that is)."""
        self.settings()
        if self.local:
            return local_cloud().attach().local_issuer().mint(name or actor(), audience)
        if name:
            raise ClientError("on Google Cloud the reviewer is whoever your credentials name; leave out --as")
        return identity_token(audience)

    # -- runs ------------------------------------------------------------------------------------------------
    def runs(self, dataset: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Recent runs, newest first."""
        from tollgate import views

        return [views.run_summary(r) for r in self.state.list_runs(limit=limit, dataset=dataset)]

    def run(self, run_id: str) -> dict[str, Any]:
        """One run with its validation, evaluation, history and executions."""
        from tollgate import views

        return views.run_detail(self.existing_run(run_id))

    def compare(self, a: str, b: str) -> dict[str, Any]:
        """Two runs side by side: their decisions, data, models, params and held-out metrics, and what differs."""
        from tollgate import views

        first, second = self.existing_run(a), self.existing_run(b)

        def version(run: dict[str, Any]) -> dict[str, Any] | None:
            number = run.get("challenger_version")
            return self.state.get_version(run["dataset"], int(number)) if number is not None else None
        return views.compare_runs(first, second, version(first), version(second))

    def trace(self, run_id: str) -> dict[str, Any]:
        """The run's OpenTelemetry trace: ``trace_id``, and the spans (locally, read from the local cloud's trace
        files) or the Cloud Trace ``url`` (on Google Cloud)."""
        from tollgate import tracing

        self.existing_run(run_id)
        return tracing.describe(run_id, self.cloud.settings.project)

    def existing_run(self, run_id: str) -> dict[str, Any]:
        """The run's record as Firestore holds it; a ClientError naming `tollgate runs` when there is none."""
        run = self.state.get_run(run_id)
        if run is None:
            raise ClientError(f"no run {run_id}; list runs with `tollgate runs`")
        return run

    def drop(self, path: str | Path, dataset: str, wait: bool = True, timeout: float = 900,
             name: str | None = None) -> dict[str, Any]:
        """Upload a data file to ``incoming/DATASET/``, which starts a run; with ``wait``, the run once it has
        ended (a promotion: once deployed), else ``{"run_id", "status": "dropped", ...}``."""
        from tollgate import spec as specs
        from tollgate import views
        from tollgate.events import run_id as derive_run_id

        try:
            specs.check_dataset_name(dataset)
        except specs.SpecError as exc:
            raise ClientError(str(exc)) from None
        path = Path(path)
        object_name = f"incoming/{dataset}/{name or path.name}"
        blob = self.cloud.upload_file(path, object_name)
        run_id = derive_run_id(self.cloud.settings.bucket, object_name, blob.generation)
        if not wait:
            return {"run_id": run_id, "status": "dropped", "object": object_name, "generation": blob.generation}
        *_, (_, run, _) = self.follow(run_id, timeout)   # the last event is the run that ended
        return views.run_summary(run)

    def follow(self, run_id: str, timeout: float = 900) -> Iterator[tuple[str, dict[str, Any], str | None]]:
        """The run's progress until it ends: ``(event, run, detail)`` with event ``status`` (detail: what it
        does now), ``superseded`` (detail: the run that took its batch, followed from then on), ``killed`` (the
        step's execution failed without a word: the reconciler relaunches it; detail: the execution) and last
        ``ended`` (the run, with ``followed_from`` when it is not the one asked for). A ClientError after
        ``timeout`` seconds."""
        deadline, asked, last = time.monotonic() + timeout, run_id, None
        said: set[str] = set()
        while time.monotonic() < deadline:
            run = self.state.get_run(run_id)
            if run is not None:
                if run["status"] != last:
                    last = run["status"]
                    yield "status", run, lifecycle.PROGRESS.get(last, last)
                if run["status"] == lifecycle.SUPERSEDED and run.get("superseded_by"):
                    yield "superseded", run, run["superseded_by"]
                    run_id, last = run["superseded_by"], None
                    continue
                if run["status"] in lifecycle.TERMINAL and (run["status"] != lifecycle.DECIDED or _deployed(run)):
                    yield "ended", (run if run_id == asked else {**run, "followed_from": asked}), None
                    return
                execution = self._failed_execution(run)
                if execution and execution not in said:
                    said.add(execution)
                    yield "killed", run, execution
            time.sleep(0.5)
        raise ClientError(f"run {run_id} did not finish within {timeout}s (status: {last}); "
                          f"follow it with `tollgate run show {run_id}`")

    def _failed_execution(self, run: dict[str, Any]) -> str | None:
        """The execution of the run's current step, if it ended in failure and the run still waits on it."""
        from tollgate.cloud import run as cloudrun

        step = lifecycle.STEP_OF.get(run["status"])
        execution = (run.get("executions") or {}).get(step) if step else None
        if not execution:
            return None
        try:
            failed = cloudrun.execution_state(self.cloud, execution) == "failed"
        except Exception:  # the execution is unknown (e.g. the local cloud restarted): the reconciler sees to it
            return None
        return execution if failed and (self.state.get_run(run["run_id"]) or run)["status"] == run["status"] else None

    # -- models and the ledger -------------------------------------------------------------------------------
    def models(self, dataset: str) -> list[dict[str, Any]]:
        """A dataset's versions: role, held-out and cross-validated metric, lineage summary."""
        from tollgate import views

        versions = self.state.list_versions(dataset)
        if not versions:
            raise ClientError(f"dataset {dataset!r} has no registered models")
        return views.model_rows(self.state.get_dataset(dataset), versions,
                                self.state.get_runs([v["run_id"] for v in versions], views.MODEL_ROW_FIELDS))

    def model(self, dataset: str, version: int | str = "champion") -> dict[str, Any]:
        """A version's whole registry record (lineage, params, libraries, artifact and hash) and its role."""
        from tollgate import serving, views

        number = self._version(dataset, version)
        record = self.state.get_version(dataset, number)
        if record is None:
            raise ClientError(f"{dataset} has no version {number}; list them with `tollgate models {dataset}`")
        role = serving.role_of(number, self.state.get_dataset(dataset), self.state.get_run(record["run_id"]))
        return views.model_record(record, role)

    def _version(self, dataset: str, version: int | str) -> int:
        if version in ("champion", "latest"):
            ds = self.state.get_dataset(dataset) or {}
            number = ds.get("champion_version") if version == "champion" else (ds.get("next_version") or 1) - 1
            if not number:
                raise ClientError(f"{dataset} has no {version} model yet")
            return int(number)
        try:
            return int(version)
        except (TypeError, ValueError):
            aliases = (self.state.get_dataset(dataset) or {}).get("aliases") or {}
            if version in aliases:
                return int(aliases[version])
            raise ClientError(f"version {version!r}: a number, champion, latest or one of {dataset}'s aliases "
                              f"({', '.join(sorted(aliases)) or 'none yet'})") from None

    def tag(self, dataset: str, version: int | str, tags: dict[str, str | None]) -> dict[str, Any]:
        """Set tags on a version (None removes one); its tags. Tags are people's labels, not model facts."""
        for key, value in tags.items():
            if not TAG.fullmatch(key) or (value is not None and len(str(value)) > 500):
                raise ClientError(f"tag {key!r}: keys are letters, digits, `.`, `_` and `-` (up to 64), values up "
                                  "to 500 characters")
        number = self._version(dataset, version)
        try:
            return self.state.tag_version(dataset, number, tags)
        except LookupError as exc:
            raise ClientError(str(exc)) from None

    def alias(self, dataset: str, name: str, version: int | str | None) -> dict[str, int]:
        """Point alias ``name`` at a version (None removes it); the dataset's aliases. `champion`, `canary`,
        `shadow` and `latest` follow what serves and are not set by hand."""
        if name in RESERVED_ALIASES or not ALIAS.fullmatch(name):
            raise ClientError(f"alias {name!r}: lowercase letters, digits, `_` and `-` (up to 40), not one of "
                              f"{', '.join(RESERVED_ALIASES)} (those follow what serves)")
        number = None if version is None else self._version(dataset, version)
        try:
            return self.state.set_alias(dataset, name, number)
        except LookupError as exc:
            raise ClientError(str(exc)) from None

    def model_bytes(self, dataset: str, version: int | str = "champion") -> tuple[dict[str, Any], bytes]:
        """(record, artifact bytes) of a version, the bytes checked against the registered sha256."""
        from tollgate import artifacts

        record = self.model(dataset, version)
        try:
            return record, artifacts.read_verified(self.cloud, record)
        except artifacts.ArtifactError as exc:
            raise ClientError(str(exc)) from None

    def load_model(self, dataset: str, version: int | str = "champion") -> Any:
        """The fitted scikit-learn pipeline, hash-checked and loaded through the services' artifact allow-list."""
        from tollgate import artifacts

        record, blob = self.model_bytes(dataset, version)
        registered = self.state.get_version(dataset, int(record["version"])) or {}   # with the spec it was trained on
        try:
            return artifacts.loads(blob, record["sha256"], artifacts.record_spec(registered))
        except artifacts.ArtifactError as exc:
            raise ClientError(str(exc)) from None

    def download(self, dataset: str, version: int | str = "champion", directory: str | Path = ".") -> dict[str, Path]:
        """Write a version's artifact (verified), its registry record and its training profile into
        ``directory/<dataset>-v<N>/``; the paths written."""
        import orjson

        from tollgate import artifacts

        record, blob = self.model_bytes(dataset, version)
        artifacts.check(blob)    # the allow-list too: what is written is what the services would load
        folder = Path(directory) / f"{dataset}-v{record['version']}"
        folder.mkdir(parents=True, exist_ok=True)
        written = {"model": folder / "model.skops", "record": folder / "record.json"}
        written["model"].write_bytes(blob)
        written["record"].write_bytes(orjson.dumps(record, default=str, option=orjson.OPT_INDENT_2))
        profile = self.cloud.read_json(f"models/{dataset}/{record['version']}/profile.json")
        if profile is not None:
            written["profile"] = folder / "profile.json"
            written["profile"].write_bytes(orjson.dumps(profile, option=orjson.OPT_INDENT_2))
        return written

    def history(self, dataset: str, at: dt.datetime | str | None = None) -> Any:
        """The decision ledger, oldest first; with ``at``, ``{"at", "serving", "entries"}``: what served then,
        since when and why, and the ledger up to then."""
        from tollgate import serving, views

        when = views.parse_time(at) if isinstance(at, str) else at
        entries = self.state.ledger(dataset)
        if when is None:
            return views.history_rows(entries)
        entries = [e for e in entries if e["at"] <= when]
        return {"at": when, "serving": serving.serving_at(entries, when), "entries": views.history_rows(entries)}

    # -- predictions -----------------------------------------------------------------------------------------
    def url(self, dataset: str) -> str:
        """The URL of the dataset's predictor service."""
        from tollgate import spec as specs
        from tollgate.cloud import run as cloudrun

        try:
            specs.check_dataset_name(dataset)
        except specs.SpecError as exc:
            raise ClientError(str(exc)) from None
        service = cloudrun.get_service(self.cloud, dataset)
        if service is None or not service.uri:
            raise ClientError(self.not_serving(dataset))
        return service.uri.rstrip("/")

    def not_serving(self, dataset: str) -> str:
        """Why a dataset has no model to answer, and what to do: a review to decide, or the first promotion."""
        pending = self.state.list_reviews("pending", dataset)
        if pending:
            run_id = pending[0]["run_id"]
            return (f"{dataset} has no model serving yet: run {run_id} waits for a review; see its evidence with "
                    f"`tollgate review show {run_id}`, then `tollgate review approve {run_id} --reason ...`")
        return (f"{dataset} has no model serving yet: its predictor serves the dataset's first promoted model (see "
                f"`tollgate runs --dataset {dataset}`)")

    def predict_answer(self, dataset: str, rows: pd.DataFrame, batch_size: int = 500,
                       progress: Any = None, explain: bool = False) -> dict[str, Any]:
        """The predictor's answers for ``rows`` (the spec's features are sent, in batches):
        ``{"predictions", "classes", "probabilities", "model_version"}``; with ``explain``, from its explanation
        route (100 rows a request), and ``explanations``: per row, the attributions (``/explain``'s)."""
        import requests

        from tollgate import spec as specs

        url = self.url(dataset)
        if (self.state.get_dataset(dataset) or {}).get("champion_version") is None:   # its service answers 503
            raise ClientError(self.not_serving(dataset))
        spec = specs.loads(self.cloud.read_bytes(specs.object_name(dataset)).decode())
        missing = [f for f in spec.features if f not in rows.columns]
        if missing:
            raise ClientError(f"missing feature column(s) {', '.join(missing)}; the model takes "
                              f"{', '.join(spec.features)}")
        headers = {} if self.local else {"Authorization": f"Bearer {identity_token(url)}"}
        features = rows[list(spec.features)]
        instances = features.astype(object).where(features.notna(), None)
        answer: dict[str, Any] = {"predictions": [], "probabilities": [], "classes": None}
        if explain:
            answer["explanations"] = []
            batch_size = min(batch_size, EXPLAINED_PER_REQUEST)
        route = "explain" if explain else "predict"
        versions: set[Any] = set()
        for start in range(0, len(rows), batch_size):
            if progress is not None:
                progress(start, min(start + batch_size, len(rows)), len(rows))
            body = {"instances": instances.iloc[start:start + batch_size].to_dict("records")}
            try:
                response = requests.post(f"{url}/{route}", json=body, headers=headers, timeout=120)
            except requests.RequestException as exc:
                raise ClientError(f"the predictor at {url} did not answer: {exc}") from exc
            if response.status_code >= 400:
                try:
                    message = response.json().get("error") or response.text[:500]
                except ValueError:
                    message = response.text[:500]
                raise ClientError(f"rows {start + 1}–{start + len(body['instances'])}: {response.status_code}: "
                                  f"{message}")
            part = response.json()
            answer["predictions"] += part["predictions"]
            answer["probabilities"] += part.get("probabilities") or []
            answer["classes"] = part.get("classes")
            if explain:
                answer["explanations"] += [e["attributions"][0] for e in part["explanations"]]
            versions.add(part.get("model_version"))
        ordered = sorted(versions, key=str)
        answer["model_version"] = ordered[0] if len(ordered) == 1 else ordered   # a canary answers some batches
        return answer

    def predict(self, dataset: str, rows: pd.DataFrame, batch_size: int = 500) -> pd.DataFrame:
        """``rows`` with a ``prediction`` column, and for a classifier one ``probability_<class>`` per class."""
        return with_predictions(rows, self.predict_answer(dataset, rows, batch_size))

    def explain(self, dataset: str, rows: pd.DataFrame, batch_size: int = EXPLAINED_PER_REQUEST) -> pd.DataFrame:
        """``rows`` with their predictions and why: ``attribution_<feature>`` per declared feature, adding up to
        ``attribution_output`` − ``attribution_baseline`` (a classifier's: log-odds of ``attribution_class``)."""
        return with_predictions(rows, self.predict_answer(dataset, rows, batch_size, explain=True))


def with_predictions(rows: pd.DataFrame, answer: dict[str, Any]) -> pd.DataFrame:
    import numpy as np

    result = rows.copy()
    result["prediction"] = answer["predictions"]
    explanations = answer.get("explanations")
    if explanations:
        for name in explanations[0]["featureAttributions"]:
            result[f"attribution_{name}"] = [e["featureAttributions"][name] for e in explanations]
        result["attribution_baseline"] = [e["baselineOutputValue"] for e in explanations]
        result["attribution_output"] = [e["instanceOutputValue"] for e in explanations]
        if "outputDisplayName" in explanations[0]:
            result["attribution_class"] = [e["outputDisplayName"] for e in explanations]
    if answer["classes"] and answer["probabilities"]:
        probabilities = np.asarray(answer["probabilities"], dtype="float64")
        for k, name in enumerate(answer["classes"]):
            result[f"probability_{name}"] = probabilities[:, k]
    return result


def _deployed(run: dict[str, Any]) -> bool:
    return run.get("decision") != "promote" or (run.get("deployment") or {}).get("status") in ("done", "failed")
