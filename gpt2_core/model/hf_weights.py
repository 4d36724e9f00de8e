"""Load and export Hugging Face GPT-2 checkpoints (``config.json`` + ``model.safetensors``).

The layout is the one ``transformers.GPT2LMHeadModel.save_pretrained`` writes. Two differences
from our modules matter:

- HF's GPT-2 uses ``Conv1D`` layers, which store weights as (in, out); ``nn.Linear`` stores
  (out, in), so every projection matrix is transposed on the way in and out.
- ``c_attn`` is the fused query/key/value projection, in q, k, v order with heads contiguous inside
  each third; our ``att.qkv`` splits its output the same way, so it maps directly (tested).

The output head is tied to the token embedding in GPT-2, so checkpoints usually omit
``lm_head.weight``; we omit it too when exporting (safetensors refuses to store shared tensors).
``transformers`` is not needed here: only ``safetensors`` (and ``huggingface_hub`` for downloads).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import torch
from huggingface_hub import snapshot_download
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as st_save

from ..files import write_file_atomically, write_json
from .config import GPTConfig
from .gpt import GPTModel

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

# OpenAI's released checkpoints on the Hugging Face Hub.
PRETRAINED_REPOS = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
}

# Activations that are GPT-2's tanh-approximated GELU under another name.
_TANH_GELU = ("gelu_new", "gelu_pytorch_tanh")
_LN_EPS = 1e-5


class WeightsDownloadError(RuntimeError):
    """OpenAI's weights could not be downloaded (offline, no cache, or the Hub unreachable)."""


# --------------------------------------------------------------------------- names and shapes


def _key_map(n_layers: int) -> list[tuple[str, str, bool]]:
    """(our name, HF name without the ``transformer.`` prefix, whether the weight is transposed)."""
    pairs = [("tok_emb.weight", "wte.weight", False), ("pos_emb.weight", "wpe.weight", False)]
    per_block = [
        ("norm1.weight", "ln_1.weight", False), ("norm1.bias", "ln_1.bias", False),
        ("att.qkv.weight", "attn.c_attn.weight", True), ("att.qkv.bias", "attn.c_attn.bias", False),
        ("att.out_proj.weight", "attn.c_proj.weight", True), ("att.out_proj.bias", "attn.c_proj.bias", False),
        ("norm2.weight", "ln_2.weight", False), ("norm2.bias", "ln_2.bias", False),
        ("ff.fc.weight", "mlp.c_fc.weight", True), ("ff.fc.bias", "mlp.c_fc.bias", False),
        ("ff.proj.weight", "mlp.c_proj.weight", True), ("ff.proj.bias", "mlp.c_proj.bias", False),
    ]
    for i in range(n_layers):
        pairs += [(f"blocks.{i}.{ours}", f"h.{i}.{theirs}", t) for ours, theirs, t in per_block]
    pairs += [("final_norm.weight", "ln_f.weight", False), ("final_norm.bias", "ln_f.bias", False)]
    return pairs


# --------------------------------------------------------------------------- configs


def config_from_hf(hf: dict, **overrides) -> GPTConfig:
    """A GPTConfig from an HF GPT-2 ``config.json`` dict; raises ValueError for shapes we cannot run.

    ``overrides`` replace fields afterwards (e.g. ``drop_rate=0.0`` for fine-tuning without dropout).
    """
    if not isinstance(hf, dict):
        raise TypeError(f"config must be a dict (the parsed config.json), got {type(hf).__name__}")
    model_type = hf.get("model_type", "gpt2")
    if model_type != "gpt2":
        raise ValueError(f"config.json has model_type={model_type!r}; only GPT-2 checkpoints ('gpt2') "
                         "load here")
    missing = [k for k in ("n_embd", "n_head", "n_layer", "n_positions", "vocab_size") if k not in hf]
    if missing:
        raise ValueError(f"config.json lacks {missing}; is this a GPT-2 checkpoint?")
    act = hf.get("activation_function", "gelu_new")
    if act not in _TANH_GELU:
        raise ValueError(f"activation_function={act!r} is not supported; GPTModel uses GPT-2's tanh GELU "
                         f"({' or '.join(_TANH_GELU)})")
    eps = hf.get("layer_norm_epsilon", _LN_EPS)
    if not math.isclose(float(eps), _LN_EPS, rel_tol=1e-6):
        raise ValueError(f"layer_norm_epsilon={eps} is not supported; GPTModel's LayerNorm uses {_LN_EPS}")
    n_inner = hf.get("n_inner")
    if n_inner not in (None, 4 * hf["n_embd"]):
        raise ValueError(f"n_inner={n_inner} is not supported; GPTModel's feed-forward width is 4 * n_embd")
    unsupported = {
        "scale_attn_weights": (hf.get("scale_attn_weights", True), True),
        "scale_attn_by_inverse_layer_idx": (hf.get("scale_attn_by_inverse_layer_idx", False), False),
        "add_cross_attention": (hf.get("add_cross_attention", False), False),
        "tie_word_embeddings": (hf.get("tie_word_embeddings", True), True),
    }
    for name, (value, wanted) in unsupported.items():
        if bool(value) != wanted:
            raise ValueError(f"{name}={value} is not supported; GPTModel needs {name}={wanted}")
    drops = {k: hf.get(k, 0.1) for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop")}
    if len(set(drops.values())) > 1 and "drop_rate" not in overrides:
        warnings.warn(f"GPTModel uses one dropout rate everywhere; the checkpoint has {drops}, "
                      f"using resid_pdrop={drops['resid_pdrop']} (pass drop_rate=... to choose)",
                      stacklevel=3)
    fields = dict(vocab_size=hf["vocab_size"], context_length=hf["n_positions"], emb_dim=hf["n_embd"],
                  n_heads=hf["n_head"], n_layers=hf["n_layer"], drop_rate=float(drops["resid_pdrop"]),
                  qkv_bias=True)
    fields.update(overrides)
    return GPTConfig(**fields)


def config_to_hf(cfg: GPTConfig, dtype: torch.dtype = torch.float32) -> dict:
    """The ``config.json`` dict ``transformers`` needs to rebuild this model as GPT2LMHeadModel."""
    special = 50256 if cfg.vocab_size > 50256 else None  # <|endoftext|> only exists in GPT-2's vocabulary
    return {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.context_length,
        "n_ctx": cfg.context_length,
        "n_embd": cfg.emb_dim,
        "n_head": cfg.n_heads,
        "n_layer": cfg.n_layers,
        "n_inner": None,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": _LN_EPS,
        "resid_pdrop": cfg.drop_rate,
        "embd_pdrop": cfg.drop_rate,
        "attn_pdrop": cfg.drop_rate,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "bos_token_id": special,
        "eos_token_id": special,
        "dtype": str(dtype).removeprefix("torch."),
    }


# --------------------------------------------------------------------------- loading


def _read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """The parsed config.json and the raw tensors of a checkpoint directory, with clear errors."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"checkpoint path must be a str or Path, got {type(path).__name__}")
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a directory; pass the folder that holds {CONFIG_NAME} and "
                         f"{WEIGHTS_NAME} (what save_pretrained / save_hf write)")
    config_file, weights_file = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    if not config_file.is_file():
        raise ValueError(f"{folder} has no {CONFIG_NAME}; is it a Hugging Face checkpoint directory?")
    try:
        hf = json.loads(config_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{config_file} is not valid JSON ({err}); re-save or re-download the "
                         "checkpoint") from err
    if not weights_file.is_file():
        other = sorted(p.name for pattern in ("*.bin", "*.index.json") for p in folder.glob(pattern))
        hint = f" (found {other}: re-save with safe_serialization and one shard)" if other else ""
        raise ValueError(f"{folder} has no {WEIGHTS_NAME}{hint}")
    try:
        tensors = load_file(weights_file)
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{weights_file} could not be read as safetensors ({err}); re-download it") from err
    return hf, tensors


def _hf_to_state_dict(tensors: dict[str, torch.Tensor], cfg: GPTConfig) -> dict[str, torch.Tensor]:
    """Rename and transpose HF GPT-2 tensors into our ``state_dict`` names, checking every shape."""
    prefix = "transformer."
    plain = {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in tensors.items()}
    lm_head = plain.pop("lm_head.weight", None)
    with torch.device("meta"):  # shapes only: no memory, no init
        expected = {k: tuple(v.shape) for k, v in GPTModel(cfg).state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    mapping = _key_map(cfg.n_layers)
    missing = [theirs for _, theirs, _ in mapping if theirs not in plain]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"checkpoint lacks {len(missing)} tensor(s) the config needs: {shown}")
    for ours, theirs, transpose in mapping:
        tensor = plain.pop(theirs)
        want = expected[ours][::-1] if transpose else expected[ours]
        if tuple(tensor.shape) != want:
            raise ValueError(f"tensor {theirs!r} has shape {tuple(tensor.shape)} but the config "
                             f"(emb_dim={cfg.emb_dim}, vocab_size={cfg.vocab_size}, "
                             f"context_length={cfg.context_length}) needs {want}")
        out[ours] = tensor.t() if transpose else tensor
    # older checkpoints store each layer's causal mask (h.0.attn.bias); we build ours on the fly
    extra = [k for k in plain if not k.endswith((".attn.bias", ".attn.masked_bias"))]
    if extra:
        raise ValueError(f"checkpoint has tensors this GPT-2 config does not use: {sorted(extra)[:5]}; "
                         f"check n_layer in config.json")
    if lm_head is not None:
        if lm_head.shape != out["tok_emb.weight"].shape or not torch.equal(lm_head, out["tok_emb.weight"]):
            raise ValueError("lm_head.weight differs from the token embedding; GPTModel ties them "
                             "(untied output heads are not supported)")
    out["out_head.weight"] = out["tok_emb.weight"]
    return out


def from_hf(path: str | os.PathLike, *, device: torch.device | str | None = None,
            dtype: torch.dtype = torch.float32, **overrides) -> GPTModel:
    """A GPTModel (in eval mode) from a Hugging Face GPT-2 checkpoint directory.

    ``overrides`` change config fields (e.g. ``drop_rate=0.0``) but not shapes.
    """
    hf, tensors = _read_checkpoint(path)
    cfg = config_from_hf(hf, **overrides)
    state = _hf_to_state_dict(tensors, cfg)
    with torch.device("meta"):  # no random init for weights we overwrite anyway
        model = GPTModel(cfg)
    model.to_empty(device=device or "cpu").to(dtype)  # storage for every parameter, as it is laid out...
    model.out_head.weight = model.tok_emb.weight  # ...but not the tie: each meta parameter was replaced alone
    model.load_state_dict(state)
    return model.eval()


# --------------------------------------------------------------------------- export


def _to_hf_tensors(model: GPTModel) -> dict[str, torch.Tensor]:
    """Our weights under HF names, Conv1D-shaped (in, out), contiguous, on CPU; no ``lm_head``."""
    if not isinstance(model, GPTModel):
        raise TypeError(f"expected a GPTModel, got {type(model).__name__}")
    state = model.state_dict()
    head, emb = model.out_head.weight, model.tok_emb.weight
    if head is not emb and (head.shape != emb.shape or not torch.equal(head, emb)):
        raise ValueError("the output head is not tied to the token embedding; GPT-2 checkpoints need it tied")
    out = {}
    for ours, theirs, transpose in _key_map(model.cfg.n_layers):
        if ours not in state and ours.endswith("att.qkv.bias"):
            # qkv_bias=False: HF's c_attn always has a bias, so write zeros (the same function)
            tensor = torch.zeros(3 * model.cfg.emb_dim, dtype=state["tok_emb.weight"].dtype)
        else:
            tensor = state[ours].detach()
        tensor = tensor.t() if transpose else tensor
        out[f"transformer.{theirs}"] = tensor.to("cpu").contiguous()  # transposes become real copies
    return out


def save_hf(model: GPTModel, path: str | os.PathLike) -> Path:
    """Write ``config.json`` + ``model.safetensors`` that ``GPT2LMHeadModel.from_pretrained`` loads."""
    tensors = _to_hf_tensors(model)
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} exists and is not a directory; choose a folder to write the "
                         "checkpoint into")
    config = config_to_hf(model.cfg, model.tok_emb.weight.dtype)
    # Each file atomically (a crash or a full disk keeps the previous one whole), not the folder as one:
    # the folder may hold other files of the learner's (a tokenizer, say) that a directory swap would drop.
    write_file_atomically(folder / WEIGHTS_NAME, st_save(tensors, metadata={"format": "pt"}))
    write_json(folder / CONFIG_NAME, config)
    return folder


# --------------------------------------------------------------------------- download


def from_pretrained(name: str, *, cache_dir: str | os.PathLike | None = None, timeout: float = 10.0,
                    **kwargs) -> GPTModel:
    """OpenAI's GPT-2 weights (``gpt2``, ``gpt2-medium``, ``gpt2-large``, ``gpt2-xl``) from the Hub.

    Downloads ``config.json`` and ``model.safetensors`` once (Hugging Face's cache) and loads them
    with :func:`from_hf`; a local checkpoint directory is loaded directly. Offline (no network, or
    ``HF_HUB_OFFLINE=1``) with nothing cached it raises :class:`WeightsDownloadError`.
    ``kwargs`` go to :func:`from_hf` (``device``, ``dtype``, config overrides).
    """
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if Path(name).is_dir():
        return from_hf(name, **kwargs)
    name = str(name)
    repos = set(PRETRAINED_REPOS.values())
    if name not in PRETRAINED_REPOS and name not in repos:
        raise ValueError(f"unknown pretrained model {name!r}; choose one of {', '.join(PRETRAINED_REPOS)} "
                         "or pass a local checkpoint directory")
    repo_id = PRETRAINED_REPOS.get(name, name)
    advice = (f"To use {name} offline, download it where you have network, e.g. "
              f"`huggingface-cli download {repo_id} config.json model.safetensors --local-dir DIR`, "
              f"then call gpt2_core.model.hf_weights.from_hf(DIR).")
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    try:
        folder = snapshot_download(repo_id, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME], cache_dir=cache_dir,
                                   etag_timeout=timeout, local_files_only=offline)
    except Exception as err:  # noqa: BLE001 - hub/network errors vary by version; all mean "not available"
        why = "HF_HUB_OFFLINE is set and it is not in the local cache" if offline else \
            f"the Hugging Face Hub could not be reached ({type(err).__name__})"
        raise WeightsDownloadError(f"cannot download {repo_id}: {why}. {advice}") from err
    return from_hf(folder, **kwargs)
