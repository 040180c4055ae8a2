"""Training data: ShareGPT-style JSONL records → token ids, labels and pixels for Qwen-VL.

**Format** (LLaMA-Factory's ShareGPT style, what ``monet puzzles generate`` writes). One JSON
object per line::

    {"messages": [{"role": "system", "content": "..."},
                  {"role": "user", "content": "<image><image>Which is better, ...?"},
                  {"role": "assistant", "content": "..."},
                  {"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}],
     "images": ["images/0001_a.png", "images/0001_b.png"]}

* ``conversations`` with ``from`` / ``value`` (``human``, ``gpt``, ``system``) is accepted too,
  and so is a top-level ``system`` string;
* one ``<image>`` per entry of ``images``, in order, in user turns only; a record with images
  but no placeholder gets them at the start of its first user turn (where Qwen's chat template
  and monet's planner put a single image);
* image paths are relative to the JSONL file's folder (absolute paths work too);
* after an optional system message, turns alternate user / assistant and end with the assistant.

A dataset argument is a ``.jsonl`` file or a folder; a folder means every ``*.jsonl`` directly
in it, in name order.

**Hashes**, recorded in the run's config and model card: ``jsonl_sha256`` over the JSONL files'
bytes (in order); ``images_sha256`` over the sorted lines ``relative/path<TAB>sha256(bytes)``
of every image referenced; ``sha256`` over both. The same files give the same hashes anywhere.

**Encoding** (:class:`Encoder`) writes Qwen's ChatML, exactly what the planner sends at
inference (:func:`monet_cli.planners.qwen.chatml`) — ``<|im_start|>role\\n content <|im_end|>\\n``
per message, an image as ``<|vision_start|>`` + one ``<|image_pad|>`` per visual token +
``<|vision_end|>`` — tokenised piece by piece so that every token knows its turn. Labels are
-100 except on the assistant turns' content and their closing ``<|im_end|>`` (the model learns
to answer and to stop; it never learns to write prompts). Images are resized by Qwen's own
rule (sides multiples of 28, pixel count within ``[min_pixels, max_pixels]``).

Nothing here imports torch at module level; :class:`Encoder` and :func:`collate` import it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from monet_cli.errors import InputError, UsageError

IMAGE = "<image>"
ROLES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant",
         "model": "assistant", "bot": "assistant"}
IGNORE = -100  # label of tokens that carry no loss (PyTorch's cross-entropy ignore_index)


class DataError(InputError):
    """A dataset file or record is missing, unreadable or malformed (the message says where)."""


@dataclass(frozen=True)
class Record:
    """One conversation: ``messages`` as ``(role, content)`` pairs, absolute image paths, and
    ``where`` it came from (``file.jsonl:LINE``)."""

    messages: tuple
    images: tuple
    where: str


@dataclass
class DatasetInfo:
    """What a dataset argument holds, with its hashes (module docstring)."""

    path: str
    files: list
    records: int
    images: int
    sha256: str
    jsonl_sha256: str
    images_sha256: str

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------- reading


def dataset_files(path) -> list[Path]:
    """The JSONL files of a dataset argument (a file, or a folder's ``*.jsonl``)."""
    p = Path(path).expanduser()
    if p.is_file():
        return [p]
    if p.is_dir():
        files = sorted(q for q in p.glob("*.jsonl") if q.is_file())
        if not files:
            raise DataError("folder holds no *.jsonl file", path=p)
        return files
    raise DataError("no such dataset (give a .jsonl file or a folder of them)", path=p)


def _content(value, where: str) -> str:
    """A message's content as text; a list of parts (``{"type": "text"|"image"}``) becomes text
    with ``<image>`` placeholders."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        out = []
        for part in value:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict) and part.get("type") == "text":
                out.append(str(part.get("text", "")))
            elif isinstance(part, dict) and part.get("type") in ("image", "image_url"):
                out.append(IMAGE)
            else:
                raise DataError(f"{where}: unsupported content part {part!r}")
        return "".join(out)
    raise DataError(f"{where}: message content must be text, got {type(value).__name__}")


def parse_record(obj, base: Path, where: str) -> Record:
    """One JSON object → a :class:`Record` (format in the module docstring), checked."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: a record is a JSON object, got {type(obj).__name__}")
    turns = obj.get("messages", obj.get("conversations"))
    if not isinstance(turns, list) or not turns:
        raise DataError(f"{where}: needs a non-empty 'messages' (or 'conversations') list")
    messages = []
    if isinstance(obj.get("system"), str) and obj["system"].strip():
        messages.append(("system", obj["system"]))
    for i, t in enumerate(turns):
        if not isinstance(t, dict):
            raise DataError(f"{where}: message {i} is not an object")
        role = t.get("role", t.get("from"))
        if role not in ROLES:
            raise DataError(f"{where}: message {i} has role {role!r}; roles are system, user, assistant "
                            f"(ShareGPT: system, human, gpt)")
        messages.append((ROLES[role], _content(t.get("content", t.get("value", "")), f"{where} message {i}")))
    body = messages[1:] if messages[0][0] == "system" else messages
    for i, (role, _) in enumerate(body):
        if role != ("user" if i % 2 == 0 else "assistant"):
            raise DataError(f"{where}: turns must alternate user / assistant after an optional system message "
                            f"(turn {i + 1} is {role})")
    if not body or body[-1][0] != "assistant":
        raise DataError(f"{where}: the last turn must be the assistant's (nothing to learn otherwise)")
    images = obj.get("images") or []
    if not isinstance(images, list) or not all(isinstance(x, str) for x in images):
        raise DataError(f"{where}: 'images' must be a list of paths")
    count = sum(c.count(IMAGE) for _, c in messages)
    if any(IMAGE in c for r, c in messages if r != "user"):
        raise DataError(f"{where}: {IMAGE} placeholders belong in user turns")
    if count == 0 and images:
        k = next(i for i, (r, _) in enumerate(messages) if r == "user")
        messages[k] = ("user", IMAGE * len(images) + messages[k][1])
    elif count != len(images):
        raise DataError(f"{where}: {count} {IMAGE} placeholder(s) for {len(images)} image(s)")
    paths = tuple(str((base / p).resolve()) if not Path(p).is_absolute() else p for p in images)
    return Record(messages=tuple(messages), images=paths, where=where)


def _sha256_file(path: Path, h=None):
    h = h or hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h


def read_dataset(path) -> tuple[list[Record], DatasetInfo]:
    """Read and check one dataset argument: its records (every image must exist) and hashes."""
    files = dataset_files(path)
    records: list[Record] = []
    jsonl_hash = hashlib.sha256()
    for f in files:
        _sha256_file(f, jsonl_hash)
        try:
            lines = f.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"cannot read ({e})", path=f) from None
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            where = f"{f}:{n}"
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise DataError(f"{where}: not valid JSON ({e})") from None
            records.append(parse_record(obj, f.parent, where))
    if not records:
        raise DataError("dataset holds no records", path=path)
    root = Path(path).expanduser()
    root = root if root.is_dir() else root.parent
    image_lines = []
    for img in sorted({i for r in records for i in r.images}):
        p = Path(img)
        if not p.is_file():
            where = next(r.where for r in records if img in r.images)
            raise DataError(f"{where}: image not found: {img}")
        try:
            rel = p.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            rel = p.name
        image_lines.append(f"{rel}\t{_sha256_file(p).hexdigest()}\n")
    images_hash = hashlib.sha256("".join(sorted(image_lines)).encode()).hexdigest()
    jsonl_hex = jsonl_hash.hexdigest()
    info = DatasetInfo(path=str(path), files=[str(f) for f in files], records=len(records), images=len(image_lines),
                       sha256=hashlib.sha256(f"jsonl:{jsonl_hex}\nimages:{images_hash}\n".encode()).hexdigest(),
                       jsonl_sha256=jsonl_hex, images_sha256=images_hash)
    return records, info


def read_datasets(paths) -> tuple[list[Record], list[DatasetInfo]]:
    """All records of several dataset arguments, in order, and each one's :class:`DatasetInfo`."""
    if not paths:
        raise UsageError("no dataset given (DATASET… or data.datasets in the config)")
    records, infos = [], []
    for p in paths:
        r, info = read_dataset(p)
        records.extend(r)
        infos.append(info)
    return records, infos


def split_indices(n: int, eval_fraction: float, eval_max: int, seed: int) -> tuple[list[int], list[int]]:
    """``(train, eval)`` record indices: a seeded random ``eval_fraction`` (at most ``eval_max``,
    at least one when ``n ≥ 2`` and the fraction is positive) held out. Sorted lists."""
    k = min(int(round(n * eval_fraction)), eval_max, n - 1) if eval_fraction > 0 else 0
    if eval_fraction > 0 and eval_max > 0 and n >= 2:
        k = max(k, 1)
    held = set(np.random.default_rng([seed, 0x5EED]).permutation(n)[:k].tolist())
    return [i for i in range(n) if i not in held], sorted(held)


def epoch_order(indices: list[int], seed: int, epoch: int) -> list[int]:
    """The shuffled order of ``indices`` in ``epoch``: a pure function of (seed, epoch), so a
    resumed run sees exactly the order an uninterrupted one would."""
    perm = np.random.default_rng([seed, epoch]).permutation(len(indices))
    return [indices[i] for i in perm]


# ----------------------------------------------------------------------------- encoding


class Encoder:
    """Records → model inputs for one Qwen-VL tokenizer and image processor (module docstring).

    ``measure(record)`` gives ``(tokens, label_tokens)`` from the image files' sizes alone (no
    pixels decoded); ``encode(record)`` gives the tensors. Both write the same tokens.
    """

    def __init__(self, processor, *, min_pixels: int, max_pixels: int):
        tok = processor.tokenizer
        self.tokenizer = tok
        self.image_processor = processor.image_processor
        self.min_pixels, self.max_pixels = int(min_pixels), int(max_pixels)
        ip = self.image_processor
        self.factor = int(getattr(ip, "patch_size", 14)) * int(getattr(ip, "merge_size", 2))
        self.merge = int(getattr(ip, "merge_size", 2))

        def one(token: str) -> int:
            i = tok.convert_tokens_to_ids(token)
            if not isinstance(i, int) or i < 0 or i == tok.unk_token_id:
                raise UsageError(f"the tokenizer has no {token} token: not a Qwen-VL model")
            return i

        self.im_end = one("<|im_end|>")
        self.vision_start, self.image_pad, self.vision_end = (one("<|vision_start|>"), one("<|image_pad|>"),
                                                              one("<|vision_end|>"))
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else one("<|endoftext|>")
        self.newline = self._ids("\n")
        self._headers = {r: self._ids(f"<|im_start|>{r}\n") for r in ("system", "user", "assistant")}

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def visual_tokens(self, width: int, height: int) -> int:
        """Visual tokens of a ``width`` × ``height`` image under the pixel budget (Qwen's
        ``smart_resize``: sides rounded to multiples of 28; one token per 28 × 28 pixels)."""
        from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

        h, w = smart_resize(int(height), int(width), factor=self.factor, min_pixels=self.min_pixels,
                            max_pixels=self.max_pixels)
        return (h // self.factor) * (w // self.factor)

    def tokens(self, record: Record, visual: list[int]) -> tuple[list[int], list[int]]:
        """``(input_ids, labels)`` of ``record`` with ``visual[i]`` tokens for image ``i``."""
        ids: list[int] = []
        labels: list[int] = []
        images = iter(visual)

        def add(piece: list[int], learn: bool):
            ids.extend(piece)
            labels.extend(piece if learn else [IGNORE] * len(piece))

        for role, content in record.messages:
            add(self._headers[role], False)
            learn = role == "assistant"
            for k, text in enumerate(content.split(IMAGE)):
                if k > 0:
                    add([self.vision_start] + [self.image_pad] * next(images) + [self.vision_end], False)
                if text:
                    add(self._ids(text), learn)
            add([self.im_end], learn)
            add(self.newline, False)
        return ids, labels

    def measure(self, record: Record) -> tuple[int, int]:
        """``(tokens, label_tokens)`` of ``record``, from image sizes read from file headers."""
        from PIL import Image

        visual = []
        for p in record.images:
            try:
                with Image.open(p) as im:
                    visual.append(self.visual_tokens(*im.size))
            except OSError as e:
                raise DataError(f"{record.where}: cannot read image {p} ({e})") from None
        ids, labels = self.tokens(record, visual)
        return len(ids), sum(1 for x in labels[1:] if x != IGNORE)

    def encode(self, record: Record) -> dict:
        """Tensors for ``record``: ``input_ids``, ``labels``, ``mm_token_type_ids`` (1-D),
        ``pixel_values`` and ``image_grid_thw`` (None without images), and the counts
        ``n_tokens``, ``n_label``."""
        import torch
        from PIL import Image

        visual, pixel_values, grid = [], None, None
        if record.images:
            pil = []
            for p in record.images:
                try:
                    with Image.open(p) as im:
                        pil.append(im.convert("RGB"))
                except OSError as e:
                    raise DataError(f"{record.where}: cannot read image {p} ({e})") from None
            out = self.image_processor(pil, size={"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels},
                                       return_tensors="pt")
            pixel_values, grid = out["pixel_values"], out["image_grid_thw"]
            visual = [int(t * h * w) // (self.merge ** 2) for t, h, w in grid.tolist()]
        ids, labels = self.tokens(record, visual)
        input_ids = torch.tensor(ids, dtype=torch.long)
        return {"input_ids": input_ids, "labels": torch.tensor(labels, dtype=torch.long),
                # transformers 5 places M-RoPE positions by modality: 1 marks an image token
                "mm_token_type_ids": (input_ids == self.image_pad).long(),
                "pixel_values": pixel_values, "image_grid_thw": grid, "n_tokens": len(ids),
                "n_label": sum(1 for x in labels[1:] if x != IGNORE)}


class EncodedRecords:
    """``records[i]`` encoded on access (a map-style dataset for a torch DataLoader)."""

    def __init__(self, records: list[Record], encoder: Encoder):
        self.records, self.encoder = records, encoder

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        return self.encoder.encode(self.records[i])


def collate(items: list[dict], pad_id: int) -> dict:
    """Right-pad a micro-batch: ``input_ids`` (pad ``pad_id``), ``labels`` (-100),
    ``attention_mask``, ``mm_token_type_ids``; images concatenated in order; counts summed."""
    import torch

    n = max(int(x["input_ids"].shape[0]) for x in items)
    ids = torch.full((len(items), n), pad_id, dtype=torch.long)
    labels = torch.full((len(items), n), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(items), n), dtype=torch.long)
    types = torch.zeros((len(items), n), dtype=torch.long)
    for i, x in enumerate(items):
        k = int(x["input_ids"].shape[0])
        ids[i, :k], labels[i, :k], mask[i, :k] = x["input_ids"], x["labels"], 1
        types[i, :k] = x["mm_token_type_ids"]
    batch = {"input_ids": ids, "labels": labels, "attention_mask": mask, "mm_token_type_ids": types,
             "n_tokens": sum(x["n_tokens"] for x in items), "n_label": sum(x["n_label"] for x in items),
             "n_records": len(items)}
    pix = [x["pixel_values"] for x in items if x["pixel_values"] is not None]
    if pix:
        batch["pixel_values"] = torch.cat(pix, 0)
        batch["image_grid_thw"] = torch.cat([x["image_grid_thw"] for x in items if x["image_grid_thw"] is not None], 0)
    return batch
