"""Find a model's transformer layout: its stack of encoder layers and, in each layer, the
attention projections (with head count and size) and the feed-forward Linears.

Layer students and head / FFN pruning go through this instead of a hard-coded path, so they
apply to any encoder built the usual way (BERT, RoBERTa, DistilBERT, ViT, a user's own
`nn.TransformerEncoder`). It is read from structure, not from attribute names:

- the layer stack is the one `nn.ModuleList` whose items (all of one class) each hold an
  attention of one width: three sibling Linears of one shape (query, key, value; their order
  does not matter to head pruning, which treats them alike) or a
  `torch.nn.MultiheadAttention` (a list of stages that widen the model, Swin's, is not one);
- the attention's output projection is the first Linear after them that maps the attention
  width back to the model width;
- the feed-forward block is the last Linear that maps an inner width back to the model width,
  with the Linear(s) before it that map the model width to that inner width (two for a gated
  FFN);
- the head size comes from the attention module (`attention_head_size`, `head_dim`, ...) or
  its head count, else from the Hugging Face config (`num_attention_heads` / `n_heads`,
  `hidden_size` / `dim`), found on the model or a submodule.

What cannot be read is said in words (`NoLayout`, `heads_reason`, `ffn_reason`), so a search
states it once instead of dropping the technique silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

Slot = tuple[nn.Module, str]
"""Where a Linear lives: (owner module, attribute name); pruning replaces it there."""

HEAD_COUNT_ATTRS = ("num_attention_heads", "num_heads", "n_heads", "n_head")
HEAD_SIZE_ATTRS = ("attention_head_size", "head_dim", "head_size", "d_head", "d_k")
WIDTH_ATTRS = ("all_head_size", "inner_dim")
"""Attributes an attention module may keep for its heads; pruning updates them."""
CONFIG_HEADS = ("num_attention_heads", "n_heads", "num_heads", "n_head", "encoder_attention_heads")
CONFIG_WIDTH = ("hidden_size", "dim", "d_model", "n_embd")
LAYER_COUNT_ATTRS = ("num_hidden_layers", "n_layers", "num_layers", "n_layer")
"""Layer counts kept on a config or on the stack's owner; a layer student updates them."""


class NoLayout(ValueError):
    """The model has no transformer layout this module can read; the message says why."""


@dataclass
class Attention:
    """One layer's attention: query/key/value and output projections, heads x head size."""

    owner: nn.Module
    qkv: tuple[Slot, Slot, Slot]
    output: Slot
    heads: int
    head_size: int


@dataclass
class FeedForward:
    """One layer's feed-forward block: Linear(s) into the inner width, one back out."""

    ups: tuple[Slot, ...]
    down: Slot


@dataclass
class Block:
    module: nn.Module
    attention: Attention | None
    ffn: FeedForward | None


@dataclass
class TransformerLayout:
    """The layer stack at `path` (`owner.<attr>`), its blocks, and the HF config if any.

    `heads_reason` / `ffn_reason` are None when every layer's heads / FFN can be pruned,
    else why not (layer students apply either way)."""

    path: str
    owner: nn.Module
    attr: str
    blocks: list[Block]
    config: Any
    heads_reason: str | None
    ffn_reason: str | None

    @property
    def num_layers(self) -> int:
        return len(self.blocks)

    @property
    def heads(self) -> int | None:
        """Heads per layer (of the first layer; pruning keeps them uniform), if readable."""
        first = self.blocks[0].attention
        return None if first is None else first.heads


def get(slot: Slot) -> nn.Linear:
    return getattr(*slot)


def put(slot: Slot, linear: nn.Linear) -> None:
    setattr(slot[0], slot[1], linear)


def hf_config(model: nn.Module) -> Any:
    """The Hugging Face config on the model or its first submodule that has one, else None."""
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "to_dict"):
            return config
    return None


def looks_like_transformer(model: nn.Module) -> str | None:
    """Evidence in words that `model` is a transformer (an attention module, or a config
    with a head count), or None."""
    config = hf_config(model)
    for name in CONFIG_HEADS:
        if isinstance(getattr(config, name, None), int):
            return f"its config sets {name}"
    for name, module in model.named_modules():
        if (
            isinstance(module, nn.MultiheadAttention)
            or "attention" in type(module).__name__.lower()
        ):
            return f"it has an attention module at {name or 'its root'}"
    return None


def find_layout(model: nn.Module) -> TransformerLayout:
    """Read `model`'s transformer layout; raises `NoLayout` with the reason when there is none."""
    stacks = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and _is_layer_stack(module)
    ]
    # a stack nested inside another one's layers is part of those layers, not a stack
    stacks = [(n, m) for n, m in stacks if not any(n.startswith(f"{o}.") for o, _ in stacks)]
    if not stacks:
        raise NoLayout(
            "no list of encoder layers with an attention each (query/key/value Linears, "
            "nn.MultiheadAttention or a module named like an attention) was found"
        )
    if len(stacks) > 1:
        names = ", ".join(n for n, _ in stacks)
        raise NoLayout(f"it has several layer stacks ({names}); one encoder stack is supported")
    path, stack = stacks[0]
    owner_path, _, attr = path.rpartition(".")
    owner = model.get_submodule(owner_path)
    config = hf_config(model)
    blocks, heads_reasons, ffn_reasons = [], set(), set()
    for layer in stack:
        attention, heads_reason = _attention(layer, config)
        ffn, ffn_reason = _feed_forward(layer)
        blocks.append(Block(layer, attention, ffn))
        heads_reasons.add(heads_reason)
        ffn_reasons.add(ffn_reason)
    heads_reasons.discard(None)
    ffn_reasons.discard(None)
    if not heads_reasons and len({b.attention.heads for b in blocks}) > 1:
        heads_reasons.add("its layers have different head counts")
    return TransformerLayout(
        path=path,
        owner=owner,
        attr=attr,
        blocks=blocks,
        config=config,
        heads_reason="; ".join(sorted(heads_reasons)) or None,
        ffn_reason="; ".join(sorted(ffn_reasons)) or None,
    )


def _is_layer_stack(stack: nn.ModuleList) -> bool:
    """Items of one class, each with an attention of one width: a list of stages that
    change the width between them (Swin's, each holding a stack of its own) is not one."""
    if len(stack) == 0 or len({type(layer) for layer in stack}) != 1:
        return False
    widths = {_attention_width(layer) for layer in stack}
    return None not in widths and len(widths) == 1


def _attention_width(layer: nn.Module) -> tuple[int, int] | str | None:
    """(in, out) features of the layer's query projection, or a MultiheadAttention's
    (embed_dim, embed_dim); else the class of a module named like an attention (GPT-2's
    Conv1D projections, a packed query_key_value: layers to keep or drop, heads unread);
    None without an attention."""
    found = _qkv(layer)
    if found is not None:
        query = get(found[1][0])
        return query.in_features, query.out_features
    packed = next((m for m in layer.modules() if isinstance(m, nn.MultiheadAttention)), None)
    if packed is not None:
        return packed.embed_dim, packed.embed_dim
    named = next((m for m in layer.modules() if "attention" in type(m).__name__.lower()), None)
    return None if named is None else type(named).__name__


def _linears(layer: nn.Module) -> list[tuple[Slot, nn.Linear]]:
    """Every Linear inside `layer` with its slot, in registration (depth-first) order."""
    found = []
    for path, module in layer.named_modules():
        if isinstance(module, nn.Linear) and path:
            owner_path, _, attr = path.rpartition(".")
            found.append(((layer.get_submodule(owner_path), attr), module))
    return found


def _qkv(layer: nn.Module) -> tuple[nn.Module, tuple[Slot, Slot, Slot]] | None:
    """The first module with three sibling Linears of one shape: query, key and value."""
    for owner in layer.modules():
        by_shape: dict[tuple[int, int], list[Slot]] = {}
        for name, child in owner.named_children():
            if isinstance(child, nn.Linear):
                by_shape.setdefault((child.in_features, child.out_features), []).append(
                    (owner, name)
                )
        for slots in by_shape.values():
            if len(slots) >= 3:
                return owner, (slots[0], slots[1], slots[2])
    return None


def _projections(layer: nn.Module) -> tuple[nn.Module, tuple[Slot, Slot, Slot], Slot] | None:
    """The attention's owner, query/key/value slots and output projection slot: the first
    Linear after them mapping the attention width back to the model width."""
    found = _qkv(layer)
    if found is None:
        return None
    owner, qkv = found
    query = get(qkv[0])
    linears = _linears(layer)
    after = next(i for i, (slot, _) in enumerate(linears) if _same(slot, qkv[2]))
    for slot, lin in linears[after + 1 :]:
        if lin.in_features == query.out_features and lin.out_features == query.in_features:
            return owner, qkv, slot
    return None


def _same(a: Slot, b: Slot) -> bool:
    return a[0] is b[0] and a[1] == b[1]


def _attention(layer: nn.Module, config: Any) -> tuple[Attention | None, str | None]:
    found = _projections(layer)
    if found is None:
        if any(isinstance(m, nn.MultiheadAttention) for m in layer.modules()):
            return None, (
                "torch.nn.MultiheadAttention packs query/key/value into one weight and ties "
                "the head count to the model width"
            )
        return None, "no query/key/value Linears (nn.Linear) with an output projection in a layer"
    owner, qkv, output = found
    width = get(qkv[0]).out_features
    size = _head_size(owner, width, config)
    if size is None:
        return None, "no head count on the attention module or in the model's config"
    if width % size:
        return None, f"attention width {width} is not a multiple of the head size {size}"
    return Attention(owner, qkv, output, width // size, size), None


def _head_size(owner: nn.Module, width: int, config: Any) -> int | None:
    """From the module (head size, else width / head count), else from the config."""
    for name in HEAD_SIZE_ATTRS:
        value = getattr(owner, name, None)
        if isinstance(value, int) and value > 0:
            return value
    for name in HEAD_COUNT_ATTRS:
        value = getattr(owner, name, None)
        if isinstance(value, int) and value > 0 and width % value == 0:
            return width // value
    if config is None:
        return None
    size = getattr(config, "head_dim", None)
    if isinstance(size, int) and size > 0:
        return size
    heads = next((getattr(config, n) for n in CONFIG_HEADS if hasattr(config, n)), None)
    hidden = next((getattr(config, n) for n in CONFIG_WIDTH if hasattr(config, n)), None)
    if isinstance(heads, int) and isinstance(hidden, int) and heads > 0 and hidden % heads == 0:
        return hidden // heads
    return None


def _feed_forward(layer: nn.Module) -> tuple[FeedForward | None, str | None]:
    """The last Linear mapping an inner width back to the model width, and the Linear(s)
    before it mapping the model width to that inner width; after the attention's output
    projection where there is one, never one of the attention's own Linears."""
    linears = _linears(layer)
    model_width = None
    projections = _projections(layer)
    if projections is not None:
        _, qkv, output = projections
        model_width = get(qkv[0]).in_features
        out_index = next(i for i, (slot, _) in enumerate(linears) if _same(slot, output))
        linears = linears[out_index + 1 :]
    packed = {id(m.out_proj) for m in layer.modules() if isinstance(m, nn.MultiheadAttention)}
    linears = [(slot, lin) for slot, lin in linears if id(lin) not in packed]
    for j in range(len(linears) - 1, 0, -1):
        down_slot, down = linears[j]
        if model_width is not None and down.out_features != model_width:
            continue
        ups = tuple(
            slot
            for slot, lin in linears[:j]
            if lin.in_features == down.out_features and lin.out_features == down.in_features
        )
        if ups:
            return FeedForward(ups, down_slot), None
    return None, "no feed-forward Linears (model width -> inner width -> model width) in a layer"


def attention_shape(model: nn.Module) -> tuple[int, int] | None:
    """(heads, heads x head size) of the first layer's attention as the model is now (after
    head pruning too): what ONNX Runtime's attention fusion must be told (`num_heads`,
    `hidden_size`). None where the layout or its heads cannot be read."""
    try:
        first = find_layout(model).blocks[0].attention
    except NoLayout:
        return None
    return None if first is None else (first.heads, first.heads * first.head_size)


def set_heads(attention: Attention, heads: int) -> None:
    """Record a new head count on the attention module's own attributes, where it keeps one
    (its forward reshapes by head size; these are for readers: fusion options, reports)."""
    old_heads, size = attention.heads, attention.head_size
    for name in HEAD_COUNT_ATTRS:
        if getattr(attention.owner, name, None) == old_heads:
            setattr(attention.owner, name, heads)
    for name in WIDTH_ATTRS:
        if getattr(attention.owner, name, None) == old_heads * size:
            setattr(attention.owner, name, heads * size)
    attention.heads = heads
