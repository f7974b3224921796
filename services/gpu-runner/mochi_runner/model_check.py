"""Check a diffusers model directory before any weights load.

A model directory comes from the weights Job, a full clone of
genmo/mochi-1-preview, or an operator's copy. What can be wrong with it (a
component missing, a shard missing or cut short, the wrong model in a folder)
otherwise shows up minutes into `from_pretrained`, as a stack trace deep inside
diffusers or safetensors. Here every problem is one line naming the file, read
from the configs and the safetensors headers alone: no tensor is read, so the
check takes milliseconds on 40 GB.

Which files load follows diffusers' rule for `variant=`: a component folder
holding any file named `<name>.<variant>...` loads that variant, the others
load their plain files, and the pipeline passes the variant only when some
component has it (diffusers refuses a variant that no component has)."""

from __future__ import annotations

import json
import math
import re
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# The precision the runner prefers (genmo ships bf16 files for the transformer and VAE).
PREFERRED_VARIANT = "bf16"

# safetensors caps its JSON header at 100 MB; a larger length field means the file is not safetensors.
_MAX_HEADER = 100_000_000
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                "U16": 2, "U32": 4, "U64": 8, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
# The variants diffusers' savers name (`variant=`); which of them loads is PREFERRED_VARIANT's choice.
_VARIANTS = ("bf16", "fp16", "fp32")
_CONFIG_DTYPE = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}
# The weights' base name by the library that loads the component.
_WEIGHTS_BASE = {"diffusers": "diffusion_pytorch_model", "transformers": "model"}


class ModelDirError(SystemExit):
    """The model directory cannot load; the message is one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Tensor:
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class Component:
    """What would load for one component of model_index.json."""

    name: str
    library: str
    class_name: str
    variant: str | None = None  # None: the plain files
    files: tuple[str, ...] = ()  # relative to the model directory
    dtype: str | None = None  # the weights' dtype as stored (None: no weights)
    bytes: int = 0


@dataclass
class ModelReport:
    root: Path
    problems: list[str] = field(default_factory=list)
    components: list[Component] = field(default_factory=list)

    @property
    def variant(self) -> str | None:
        """What the loader passes as `from_pretrained(variant=...)`."""
        return PREFERRED_VARIANT if any(c.variant == PREFERRED_VARIANT for c in self.components) else None

    def summary(self) -> str:
        lines = [f"{self.root}: loads with variant={self.variant}"]
        for c in self.components:
            kind = c.variant or "plain"
            lines.append(f"  {c.name:<13} {c.class_name:<32} {kind:<6} {c.dtype or '-':<5} "
                         f"{len(c.files):>2} files {_size(c.bytes):>10}  {', '.join(c.files)}")
        lines.append(f"  total {_size(sum(c.bytes for c in self.components))}")
        return "\n".join(lines)


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.2f} MB"


def read_header(path: Path) -> tuple[dict[str, Tensor] | None, str | None]:
    """The tensors a safetensors file declares, or the one problem with it.

    Parsed by hand rather than with the safetensors package: that package comes
    only with the runner's extra (the `mochi` command runs without it), and its
    safe_open reports a short file as a bare "MetadataIncompleteBuffer" and
    hides the offsets this check needs to say how short. The format is an
    8-byte little-endian header length, a JSON header, then the tensor bytes."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return None, f"{size} bytes, shorter than a safetensors header"
        (length,) = struct.unpack("<Q", head)
        if length > _MAX_HEADER or 8 + length > size:
            return None, f"header length {length} does not fit in the file ({size} bytes): truncated or not safetensors"
        raw = f.read(length)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"header is not JSON ({err})"
    if not isinstance(header, dict):
        return None, "header is not a JSON object"
    header.pop("__metadata__", None)
    tensors: dict[str, Tensor] = {}
    end = 0
    for name, entry in header.items():
        try:
            dtype, shape, (start, stop) = entry["dtype"], tuple(entry["shape"]), entry["data_offsets"]
        except (KeyError, TypeError, ValueError):
            return None, f"header entry {name!r} lacks dtype, shape or data_offsets"
        if dtype in _DTYPE_BYTES and stop - start != math.prod(shape) * _DTYPE_BYTES[dtype]:
            return None, f"header entry {name!r}: {stop - start} bytes for a {dtype} tensor of shape {list(shape)}"
        tensors[name] = Tensor(dtype, shape)
        end = max(end, stop)
    expected = 8 + length + end
    if size < expected:
        return None, f"truncated: {size} bytes, its header needs {expected}"
    if size > expected:
        return None, f"{size} bytes, its header accounts for {expected} (trailing data)"
    return tensors, None


def _read_json(path: Path, report: ModelReport, rel: str) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        report.problems.append(f"{rel}: not readable JSON ({err})")
        return None
    if not isinstance(data, dict):
        report.problems.append(f"{rel}: not a JSON object")
        return None
    return data


def _has_variant(folder: Path, variant: str) -> bool:
    # diffusers' own test: the file name's second dotted part starts with the variant
    # ("diffusion_pytorch_model.bf16-00001-of-00003.safetensors").
    return any(len(p.name.split(".")) > 1 and p.name.split(".")[1].startswith(variant)
               for p in folder.iterdir() if p.is_file())


def _weight_sets(folder: Path, library: str) -> dict[str | None, tuple[Path | None, list[Path]]]:
    """Per variant found (None: plain), its index file (if sharded) and weight files."""
    base = _WEIGHTS_BASE[library]
    sets: dict[str | None, tuple[Path | None, list[Path]]] = {}
    for variant in (None, *_VARIANTS):
        single = folder / (f"{base}.{variant}.safetensors" if variant else f"{base}.safetensors")
        index = folder / (f"{base}.safetensors.index.{variant}.json" if variant else f"{base}.safetensors.index.json")
        # diffusers looks for the index first, transformers for the single file first.
        order = [(index, True), (single, False)] if library == "diffusers" else [(single, False), (index, True)]
        for path, sharded in order:
            if path.exists():
                sets[variant] = (path, []) if sharded else (None, [path])
                break
    return sets


def _check_index(index: Path, root: Path, report: ModelReport) -> dict[str, list[str]]:
    """The index's shard files and the tensor names it places in each."""
    rel = str(index.relative_to(root))
    data = _read_json(index, report, rel)
    if data is None:
        return {}
    weight_map = data.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        report.problems.append(f"{rel}: no weight_map")
        return {}
    shards: dict[str, list[str]] = {}
    for tensor, shard in weight_map.items():
        shards.setdefault(str(shard), []).append(tensor)
    for shard in shards:
        if "/" in shard or not (index.parent / shard).is_file():
            report.problems.append(f"{rel}: refers to {index.parent.relative_to(root) / shard}, which is missing")
    return shards


def _expected_shapes(class_name: str,
                     cfg: dict) -> tuple[list[tuple[tuple[str, ...], tuple[int, ...]]], dict[str, int]]:
    """(tensor names tried in turn, the shape the config fixes) and, per block
    prefix, how many blocks the config asks for."""
    g = cfg.get
    if class_name == "MochiTransformer3DModel":
        inner = g("num_attention_heads", 0) * g("attention_head_dim", 0)
        p, cin = g("patch_size", 0), g("in_channels", 0)
        cout = g("out_channels") or cin
        return ([(("patch_embed.proj.weight",), (inner, cin, p, p)),
                 (("proj_out.weight",), (p * p * cout, inner)),
                 (("time_embed.caption_proj.weight",), (g("pooled_projection_dim", 0), g("text_embed_dim", 0)))],
                {"transformer_blocks": g("num_layers", 0)})
    if class_name == "AutoencoderKLMochi":
        latent, dec = g("latent_channels", 0), g("decoder_block_out_channels") or [0]
        return ([(("decoder.conv_in.weight",), (dec[-1], latent, 1, 1, 1)),
                 (("decoder.proj_out.weight",), (g("out_channels", 0), dec[0]))], {})
    if class_name == "T5EncoderModel":
        return ([(("shared.weight", "encoder.embed_tokens.weight"), (g("vocab_size", 0), g("d_model", 0)))],
                {"encoder.block": g("num_layers", 0)})
    return [], {}


def _check_weights(name: str, class_name: str, cfg: dict, variant: str | None, files: list[Path],
                   index_names: dict[str, list[str]], complete: bool, root: Path,
                   report: ModelReport) -> str | None:
    """Headers, sizes, dtypes and shapes of one weight set; returns its dtype.
    Shapes are checked only on a complete set: a missing shard is the problem,
    not the tensors it would have held."""
    label = f"{name} ({variant or 'plain'} files)"
    tensors: dict[str, Tensor] = {}
    file_dtypes: dict[str, set[str]] = {}
    for path in files:
        rel = str(path.relative_to(root))
        header, problem = read_header(path)
        if problem:
            report.problems.append(f"{rel}: {problem}")
            complete = False
            continue
        assert header is not None
        tensors.update(header)
        file_dtypes[rel] = {t.dtype for t in header.values()}
        placed = index_names.get(path.name, [])
        absent = [t for t in placed if t not in header]
        if absent:
            report.problems.append(f"{rel}: lacks {len(absent)} tensors its index places there (first: {absent[0]})")
    if not tensors:
        return None
    counts = Counter(t.dtype for t in tensors.values())
    dtype = counts.most_common(1)[0][0]
    for rel, dtypes in file_dtypes.items():
        if dtypes - {dtype}:
            report.problems.append(f"{rel}: {'/'.join(sorted(dtypes - {dtype}))} tensors in {label}, "
                                   f"whose other tensors are {dtype}")
    # transformers records the saved weights' dtype in config.json; a variant's
    # name fixes nothing (fp32 numbers under a bf16 name still load), so only
    # the plain files are held to a config.
    wanted = None if variant else _CONFIG_DTYPE.get(cfg.get("torch_dtype") or cfg.get("dtype") or "")
    if wanted and dtype != wanted:
        report.problems.append(f"{label}: weights are {dtype}, {name}/config.json says {wanted}")
    if not complete:
        return dtype
    shapes, blocks = _expected_shapes(class_name, cfg)
    for names, shape in shapes:
        found = next((n for n in names if n in tensors), None)
        if found is None:
            report.problems.append(f"{label}: no tensor {names[0]}; not a {class_name}?")
        elif tensors[found].shape != shape:
            report.problems.append(f"{label}: {found} has shape {list(tensors[found].shape)}, "
                                   f"{name}/config.json implies {list(shape)}")
    for prefix, count in blocks.items():
        pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.")
        found_blocks = {m.group(1) for t in tensors if (m := pattern.match(t))}
        if len(found_blocks) != count:
            report.problems.append(f"{label}: {len(found_blocks)} {prefix} in the weights, "
                                   f"{name}/config.json says {count}")
    return dtype


def _check_component(root: Path, name: str, library: str, class_name: str, report: ModelReport) -> dict | None:
    folder = root / name
    if not folder.is_dir():
        report.problems.append(f"{name}/: missing (model_index.json names {class_name})")
        return None
    present = sorted(p for p in folder.iterdir() if p.is_file())
    if not present:
        report.problems.append(f"{name}/: empty (model_index.json names {class_name})")
        return None
    if not (folder / "config.json").exists():  # a scheduler or a tokenizer: configs, no weights
        if name == "scheduler" and not (folder / "scheduler_config.json").exists():
            report.problems.append(f"{name}/scheduler_config.json: missing")
        report.components.append(Component(name, library, class_name,
                                           files=tuple(str(p.relative_to(root)) for p in present),
                                           bytes=sum(p.stat().st_size for p in present)))
        return None
    cfg = _read_json(folder / "config.json", report, f"{name}/config.json")
    if cfg is None:
        return None
    if library not in _WEIGHTS_BASE:
        report.problems.append(f"{name}/: model_index.json names library {library!r}, not diffusers or transformers")
        return cfg
    sets = _weight_sets(folder, library)
    for stray in folder.glob("*.safetensors.index*.json"):
        if stray not in {index for index, _ in sets.values()}:
            _check_index(stray, root, report)  # an index nothing loads must still not point at missing files
    loads = PREFERRED_VARIANT if _has_variant(folder, PREFERRED_VARIANT) else None
    if loads not in sets:
        base = _WEIGHTS_BASE[library]
        want = (f"{base}.safetensors.index.{loads}.json or {base}.{loads}.safetensors" if loads
                else f"{base}.safetensors.index.json or {base}.safetensors")
        report.problems.append(f"{name}/: no weights to load (looked for {want})")
        return cfg
    summary = None
    for variant, (index, files) in sets.items():
        names: dict[str, list[str]] = {}
        complete = True
        if index is not None:
            names = _check_index(index, root, report)
            files = [folder / s for s in names if "/" not in s and (folder / s).is_file()]
            complete = bool(names) and len(files) == len(names)
        dtype = _check_weights(name, class_name, cfg, variant, files, names, complete, root, report)
        if variant == loads:
            listed = ([index] if index is not None else []) + files
            summary = Component(name, library, class_name, variant, tuple(str(p.relative_to(root)) for p in listed),
                                dtype, sum(p.stat().st_size for p in listed))
    if summary is not None:
        report.components.append(summary)
    return cfg


def check_model(root: Path) -> ModelReport:
    """Every problem found (one line each) and, per component, what would load."""
    root = Path(root)
    report = ModelReport(root)
    index = root / "model_index.json"
    if not index.is_file():
        report.problems.append(f"{index}: missing; not a diffusers model directory")
        return report
    model_index = _read_json(index, report, "model_index.json")
    if model_index is None:
        return report
    configs: dict[str, dict] = {}
    for name, entry in model_index.items():
        if name.startswith("_") or not isinstance(entry, list) or len(entry) != 2 or None in entry:
            continue
        library, class_name = entry
        cfg = _check_component(root, name, library, class_name, report)
        if cfg is not None:
            configs[name] = cfg
    if report.variant is not None:
        # With variant= set, diffusers' _identify_model_variants splits the name of every
        # entry (file or folder) in every folder model_index.json names at its dots, and a
        # name without one ends the load in an IndexError: in T5's folder, which has no bf16
        # file to stop the scan early, for certain.
        for name in model_index:
            folder = root / name
            if folder.is_dir():
                report.problems.extend(f"{name}/{p.name}: a name without a dot breaks diffusers' variant lookup "
                                       "(IndexError in from_pretrained); move it out"
                                       for p in sorted(folder.iterdir()) if "." not in p.name)
    # The components must fit each other, not only their own configs.
    t, te, vae = configs.get("transformer", {}), configs.get("text_encoder", {}), configs.get("vae", {})
    if t and te and t.get("text_embed_dim") != te.get("d_model"):
        report.problems.append(f"transformer/config.json: text_embed_dim {t.get('text_embed_dim')} "
                               f"but text_encoder/config.json has d_model {te.get('d_model')}")
    if t and vae and t.get("in_channels") != vae.get("latent_channels"):
        report.problems.append(f"transformer/config.json: in_channels {t.get('in_channels')} "
                               f"but vae/config.json has latent_channels {vae.get('latent_channels')}")
    return report


def loadable_model(path: Path | str) -> ModelReport:
    """The report of a directory that passes the check; ModelDirError (a
    SystemExit whose message is the problem lines) otherwise."""
    report = check_model(Path(path))
    if report.problems:
        raise ModelDirError([f"model check failed for {path}:"] + report.problems)
    return report


def check_model_dir(path: Path | str) -> None:
    """The runner's start-up check, before any weights load: exits with the problem lines."""
    loadable_model(path)
