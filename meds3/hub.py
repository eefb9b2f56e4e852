"""Push what meds3 writes to the Hugging Face Hub and load it back by Hub id.

Pushing (each writes a ``README.md`` card with YAML front matter beside the files):

- :func:`push_adapter`: a policy LoRA adapter (``meds3 train policy`` output or its ``adapter/``);
  the adapter files sit at the repository root, so ``PeftModel.from_pretrained`` and vLLM load it.
- :func:`push_prm`: a PRM (``meds3 train prm`` output); ``PRMScorer("owner/name")`` loads it.
- :func:`push_dataset`: rollout trees (``kind="trees"``) or the SFT / PRM records a trainer wrote
  (``kind="sft"`` / ``"prm"``, its ``data.jsonl``); the records load with ``datasets.load_dataset``.

Loading: :func:`resolve_hub` turns a Hub reference into a local snapshot folder. The rule (the
same as for base models in :func:`meds3.engines.models.resolve_model`):

1. a path that exists here is always the local path;
2. ``hf://owner/name`` (a model repo) or ``hf://datasets/owner/name`` (a dataset repo), with an
   optional ``@revision``, is always the Hub;
3. a bare ``owner/name`` is the Hub only when it does not look like a path: it does not exist,
   does not start with ``./``, ``../``, ``/`` or ``~``, has exactly one ``/`` and its first part
   is not an existing folder (so ``runs/policy`` with a ``runs/`` folder here stays a path);
4. anything else is returned as a path, and the caller reports it missing as before.

Where the adapter of an engine request, ``PRMScorer`` and the tree readers load, this rule
applies. Use ``hf://`` when in doubt.

The hub itself is an object with ``create_repo``, ``upload_folder`` and ``snapshot_download``
(:class:`huggingface_hub.HfApi`). Setting ``MEDS3_HUB_DIR`` to a folder uses :class:`FolderHub`
instead: a "hub" that is a directory, for offline machines and tests.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from meds3.cards import dataset_card, eval_table, model_card

logger = logging.getLogger(__name__)

HUB_DIR_ENV = "MEDS3_HUB_DIR"
HUB_SCHEME = "hf://"
DATASET_KINDS = ("trees", "sft", "prm")
#: Hub ids of the embedded aliases that are public models (the card's ``base_model`` must be a
#: Hub id; ``tiny-random-llama`` has none and is named in the card text only).
ALIAS_HUB_IDS = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}
# Files of a training output folder pushed beside the adapter (not data.jsonl, merged/, trainer/).
_RUN_FILES = ("config.yaml", "summary.json", "loss.png")


class HubError(RuntimeError):
    """A Hub reference could not be downloaded, or a push had nothing to push."""


# ---------------------------------------------------------------------------- references
@dataclass(frozen=True)
class HubRef:
    """A parsed Hub reference: repository id, type (``"model"`` or ``"dataset"``), revision."""

    repo_id: str
    repo_type: str = "model"
    revision: Optional[str] = None


def parse_hub_ref(text: str | os.PathLike, repo_type: str = "model") -> Optional[HubRef]:
    """The Hub reference ``text`` names under the module's rule, or None for a local path.

    Args:
        text: ``hf://[datasets/|models/]owner/name[@revision]``, a bare ``owner/name`` or a path.
        repo_type: the repository type of a bare ``owner/name`` (``"model"`` or ``"dataset"``).

    Raises:
        ValueError: an ``hf://`` reference whose repository id is not ``owner/name``.
    """
    from meds3.engines.models import is_hub_id, looks_like_path

    if isinstance(text, os.PathLike):
        return None
    if text.startswith(HUB_SCHEME):
        rest = text[len(HUB_SCHEME):]
        for prefix, kind in (("datasets/", "dataset"), ("models/", "model")):
            if rest.startswith(prefix):
                rest, repo_type = rest[len(prefix):], kind
        repo_id, _, revision = rest.partition("@")
        if not is_hub_id(repo_id):
            raise ValueError(f"{text!r}: after hf:// expected [datasets/]owner/name[@revision], got {repo_id!r}")
        return HubRef(repo_id, repo_type, revision or None)
    if os.path.exists(text) or looks_like_path(text) or not is_hub_id(text):
        return None
    return HubRef(text, repo_type)


def default_hub():
    """The hub pushes and downloads go to: a :class:`FolderHub` at ``$MEDS3_HUB_DIR`` when set,
    else :class:`huggingface_hub.HfApi` (its token and endpoint settings apply)."""
    if os.environ.get(HUB_DIR_ENV):
        return FolderHub(os.environ[HUB_DIR_ENV])
    from huggingface_hub import HfApi

    return HfApi()


def resolve_hub(id_or_path: str | os.PathLike, repo_type: str = "model", api: Any = None) -> Path:
    """A local folder for ``id_or_path``: the path itself, or a downloaded Hub snapshot.

    Args:
        id_or_path: a local path or a Hub reference (see the module docstring for the rule).
        repo_type: the repository type of a bare ``owner/name``.
        api: the hub (default: :func:`default_hub`).

    Returns:
        The local path (unchecked: the caller reports a missing one), or the snapshot folder.

    Raises:
        HubError: a Hub reference that could not be downloaded (the reference and cause named).
        ValueError: a malformed ``hf://`` reference.
    """
    ref = parse_hub_ref(id_or_path, repo_type)
    if ref is None:
        return Path(id_or_path).expanduser()
    api = api if api is not None else default_hub()
    try:
        local = api.snapshot_download(ref.repo_id, repo_type=ref.repo_type, revision=ref.revision)
    except Exception as exc:  # noqa: BLE001 - every hub failure gets the same actionable message
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise HubError(f"{id_or_path}: not a local path; as the Hugging Face {ref.repo_type} repository "
                       f"{ref.repo_id!r} it could not be downloaded ({type(exc).__name__}: {first}). "
                       f"Pass an existing local path, or write ./{id_or_path} for a path.") from exc
    logger.info("%s -> %s", id_or_path, local)
    return Path(local)


# ---------------------------------------------------------------------------- a folder hub
class FolderHub:
    """A hub that is a directory: repository ``owner/name`` of type ``t`` is the folder
    ``<root>/<t>s/owner/name``. Implements the three ``HfApi`` methods meds3 calls; an upload
    adds and replaces files (as a Hub commit does) and keeps no history.

    Args:
        root: the folder (created on the first push).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()

    def repo_dir(self, repo_id: str, repo_type: Optional[str] = None) -> Path:
        """The folder of a repository (it may not exist)."""
        from meds3.engines.models import is_hub_id

        if not is_hub_id(repo_id):
            raise ValueError(f"repository id must be owner/name, got {repo_id!r}")
        return self.root / f"{repo_type or 'model'}s" / repo_id

    def create_repo(self, repo_id: str, *, repo_type: Optional[str] = None, exist_ok: bool = False,
                    private: Optional[bool] = None, **_: Any) -> str:
        """Create the repository folder; returns its path.

        Raises:
            FileExistsError: it exists and ``exist_ok`` is false.
        """
        folder = self.repo_dir(repo_id, repo_type)
        folder.mkdir(parents=True, exist_ok=exist_ok)
        return str(folder)

    def upload_folder(self, *, repo_id: str, folder_path: str | os.PathLike, path_in_repo: Optional[str] = None,
                      repo_type: Optional[str] = None, commit_message: Optional[str] = None, **_: Any) -> str:
        """Copy the files of ``folder_path`` into the repository (under ``path_in_repo``).

        Raises:
            FileNotFoundError: the repository was not created.
        """
        folder = self.repo_dir(repo_id, repo_type)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: repository {repo_id!r} does not exist (create_repo first)")
        shutil.copytree(folder_path, folder / (path_in_repo or ""), dirs_exist_ok=True)
        return str(folder)

    def snapshot_download(self, repo_id: str, *, repo_type: Optional[str] = None, revision: Optional[str] = None,
                          **_: Any) -> str:
        """The repository folder itself (a folder hub has one revision).

        Raises:
            FileNotFoundError: no such repository, or a revision was asked for.
        """
        folder = self.repo_dir(repo_id, repo_type)
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no {repo_type or 'model'} repository {repo_id!r} in {self.root}")
        if revision is not None:
            raise FileNotFoundError(f"{repo_id}@{revision}: a folder hub keeps no revisions")
        return str(folder)


# ---------------------------------------------------------------------------- pushing
def push_adapter(path: str | os.PathLike, repo_id: str, *, datasets: Sequence[str] = (),
                 eval_report: Optional[str | os.PathLike] = None, private: bool = False,
                 commit_message: str = "Upload meds3 policy adapter", api: Any = None) -> str:
    """Push a policy LoRA adapter with a model card (``library_name: peft``).

    Args:
        path: a ``meds3 train policy`` output folder (its ``adapter/`` is pushed, with
            ``config.yaml``, ``summary.json`` and ``loss.png``) or an adapter folder.
        repo_id: ``owner/name`` of the model repository (created if missing).
        datasets: Hub dataset ids the adapter was trained on (the card's ``datasets``); the
            ``hf://`` trees of its ``config.yaml`` are added.
        eval_report: a ``meds3 eval`` output folder or its ``results.md``: the card's results table.
        private: create the repository private.
        api: the hub (default: :func:`default_hub`).

    Returns:
        The repository URL (a folder for :class:`FolderHub`).

    Raises:
        FileNotFoundError: no adapter at ``path``, or a missing ``eval_report``.
        ValueError: the adapter is not a policy adapter (its ``meds3_train.json`` says otherwise).
    """
    return _push_model(path, repo_id, "policy", datasets, eval_report, private, commit_message, api)


def push_prm(path: str | os.PathLike, repo_id: str, *, datasets: Sequence[str] = (),
             eval_report: Optional[str | os.PathLike] = None, private: bool = False,
             commit_message: str = "Upload meds3 PRM", api: Any = None) -> str:
    """Push a PRM (a LoRA adapter with a one-logit head) with a model card
    (``library_name: meds3``: it loads with :class:`meds3.train.scorer.PRMScorer`).

    Arguments, return value and errors as :func:`push_adapter` (``path``: a ``meds3 train prm``
    output folder or its ``adapter/``).
    """
    return _push_model(path, repo_id, "prm", datasets, eval_report, private, commit_message, api)


def push_dataset(path: str | os.PathLike, repo_id: str, kind: str, *, private: bool = False,
                 commit_message: Optional[str] = None, api: Any = None) -> str:
    """Push rollout trees or training records as a dataset repository with a dataset card.

    Args:
        path: for ``kind="trees"``, a rollout output folder (its ``trees/`` shards, with
            ``config.yaml`` and ``summary.json``) or a tree folder; for ``"sft"`` / ``"prm"``, a
            training output folder (its ``data.jsonl``) or a JSONL file of records.
        repo_id: ``owner/name`` of the dataset repository (created if missing).
        kind: ``"trees"``, ``"sft"`` or ``"prm"``.

    Returns:
        The repository URL (a folder for :class:`FolderHub`).

    Raises:
        ValueError: an unknown ``kind``.
        FileNotFoundError: nothing of that kind at ``path``.
    """
    from meds3.rollout.store import SHARD_GLOB

    if kind not in DATASET_KINDS:
        raise ValueError(f"kind must be one of {', '.join(DATASET_KINDS)}, got {kind!r}")
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="meds3-push-") as tmp:
        stage = Path(tmp)
        if kind == "trees":
            folder = path / "trees" if (path / "trees").is_dir() else path
            shards = sorted(folder.glob(SHARD_GLOB))
            if not shards:
                raise FileNotFoundError(f"{path}: no tree shards ({SHARD_GLOB}) here or in {path / 'trees'}")
            (stage / "trees").mkdir()
            for shard in shards:
                shutil.copy2(shard, stage / "trees" / shard.name)
            settings = _copy_run_files(path, stage, ("config.yaml", "summary.json"))
            rows = sum(1 for s in shards for line in s.open(encoding="utf-8") if line.strip())
            data_files = "trees/*.jsonl"
        else:
            source = path / "data.jsonl" if path.is_dir() else path
            if not source.is_file():
                raise FileNotFoundError(f"{source}: no {kind} records file (data.jsonl of a training output)")
            shutil.copy2(source, stage / "data.jsonl")
            settings = _copy_run_files(source.parent, stage, ("config.yaml",))
            rows = sum(1 for line in source.open(encoding="utf-8") if line.strip())
            data_files = "data.jsonl"
        dataset_card(repo_id, kind, rows, data_files, settings).save(stage / "README.md")
        return _upload(stage, repo_id, "dataset", private, commit_message or f"Upload meds3 {kind} dataset", api)


def _push_model(path, repo_id: str, kind: str, datasets: Sequence[str], eval_report, private: bool,
                commit_message: str, api: Any) -> str:
    from meds3.train.common import META_FILE
    from meds3.train.scorer import find_adapter_dir

    adapter = find_adapter_dir(path)
    meta_path = adapter / META_FILE
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
    if meta.get("kind", kind) != kind:
        raise ValueError(f"{meta_path}: adapter kind is {meta['kind']!r}, not {kind!r}")
    report = eval_table(eval_report) if eval_report is not None else None
    with tempfile.TemporaryDirectory(prefix="meds3-push-") as tmp:
        stage = Path(tmp)
        shutil.copytree(adapter, stage, dirs_exist_ok=True)
        settings = _copy_run_files(Path(path), stage, _RUN_FILES)  # a training output folder has them
        base = str(meta.get("base_model") or settings.get("base_model") or "")
        base_hub_id = _base_hub_id(base)
        if base_hub_id:
            _set_adapter_base(stage / "adapter_config.json", base_hub_id)
        # the trees it was trained on, when they were Hub datasets (hf://...: never a guess from a path)
        trained_on = [parse_hub_ref(t, "dataset").repo_id for t in settings.get("trees") or []
                      if isinstance(t, str) and t.startswith(HUB_SCHEME)]
        datasets = list(dict.fromkeys([*datasets, *trained_on]))
        card = model_card(repo_id, kind, base, base_hub_id, settings, _summary(stage), datasets, report)
        card.save(stage / "README.md")
        return _upload(stage, repo_id, "model", private, commit_message, api)


def _upload(stage: Path, repo_id: str, repo_type: str, private: bool, message: str, api: Any) -> str:
    api = api if api is not None else default_hub()
    url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    api.upload_folder(repo_id=repo_id, folder_path=str(stage), repo_type=repo_type, commit_message=message)
    logger.info("pushed %s to %s", ", ".join(sorted(p.name for p in stage.iterdir())), url)
    return str(url)


def _copy_run_files(run_dir: Path, stage: Path, names: Iterable[str]) -> dict[str, Any]:
    """Copy the run files present in ``run_dir``; return its ``config.yaml`` settings ({} if none)."""
    import yaml

    for name in names:
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, stage / name)
    config = run_dir / "config.yaml"
    return (yaml.safe_load(config.read_text(encoding="utf-8")) or {}) if config.is_file() else {}


def _summary(stage: Path) -> dict[str, Any]:
    path = stage / "summary.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _base_hub_id(base: str) -> Optional[str]:
    """The Hub id of a base model name: an ``owner/name`` id itself, or an alias's public id."""
    if base.lower() in ALIAS_HUB_IDS:
        return ALIAS_HUB_IDS[base.lower()]
    ref = parse_hub_ref(base) if base and not base.startswith(HUB_SCHEME) else None
    return ref.repo_id if ref else None


def _set_adapter_base(config_path: Path, base_hub_id: str) -> None:
    # why: the saved config names the local folder the base was loaded from, useless elsewhere;
    # with the Hub id, peft's AutoPeftModel can fetch the base itself
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_hub_id
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
