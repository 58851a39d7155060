"""Graph modules made trainable and prunable: their matrix products by a stored weight become
nn.Linear / nn.Conv2d modules, which pruning, students and fine-tuning work on.

onnx2torch keeps an ONNX file's weights as buffers and its MatMul nodes as `OnnxMatMul`
modules reading them: distillation and fine-tuning then trained only the norms, and pruning,
which works on nn.Linear and nn.Conv2d, found nothing in a transformer exported as MatMul
(every one) and still said "unstructured 50% sparsity" over an unchanged model. Here every
MatMul by a constant 2-D float weight becomes an nn.Linear (weight transposed; it computes
the same product, as the conversion check then confirms), and every other float initializer
becomes a parameter (`linear_and_trainable`).

A torch.export program's module calls `aten.linear` / `aten.conv2d` on its parameters:
`export_layers` makes those calls nn.Linear / nn.Conv2d modules holding the same parameters,
so the program is pruned and trained like the model it was exported from.
"""

from __future__ import annotations

import torch
from torch import fx, nn


def linear_and_trainable(module: fx.GraphModule) -> int:
    """Rewrite `module` in place; returns how many MatMuls became nn.Linear."""
    store = getattr(module, "initializers", None)
    if not isinstance(store, nn.Module):
        return 0
    replaced = 0
    for node in list(module.graph.nodes):
        weight = _constant_weight(module, node)
        if weight is None:
            continue
        linear = nn.Linear(weight.shape[0], weight.shape[1], bias=False)
        linear.weight = nn.Parameter(weight.detach().t().contiguous().clone())
        _swap(module, node, f"linear_{node.target}".replace(".", "_"), linear)
        replaced += 1
    module.graph.eliminate_dead_code()
    used = {n.target for n in module.graph.nodes if n.op == "get_attr"}
    for name, buffer in list(store.named_buffers(recurse=False)):
        if f"initializers.{name}" not in used:  # moved into a Linear: no second copy
            delattr(store, name)
        elif buffer.is_floating_point():
            delattr(store, name)
            store.register_parameter(name, nn.Parameter(buffer.detach().clone()))
    module.recompile()
    return replaced


def _constant_weight(module: fx.GraphModule, node: fx.Node) -> torch.Tensor | None:
    """The 2-D float tensor `node` multiplies its first input by, where it is an OnnxMatMul
    of an activation and a stored constant."""
    if node.op != "call_module" or type(module.get_submodule(node.target)).__name__ != (
        "OnnxMatMul"
    ):
        return None
    if len(node.args) != 2 or not isinstance(node.args[1], fx.Node):
        return None
    source = node.args[1]
    if source.op != "get_attr" or not isinstance(node.args[0], fx.Node):
        return None
    if node.args[0].op == "get_attr":
        return None
    value = module.get_buffer(source.target) if _is_buffer(module, source.target) else None
    if value is None or value.dim() != 2 or not value.is_floating_point():
        return None
    return value


def _is_buffer(module: nn.Module, target: str) -> bool:
    owner, _, name = target.rpartition(".")
    return name in dict(module.get_submodule(owner).named_buffers(recurse=False))


def export_layers(module: fx.GraphModule) -> int:
    """Rewrite a torch.export module's linear and 2-D convolution calls on its own parameters
    as modules (the same Parameter objects: nothing is copied); returns how many."""
    replaced = 0
    for node in list(module.graph.nodes):
        layer = _layer_of(module, node)
        if layer is None:
            continue
        _swap(module, node, f"layer_{replaced}_{node.name}", layer)
        replaced += 1
    if replaced:
        module.graph.eliminate_dead_code()
        module.recompile()
    return replaced


def _swap(module: fx.GraphModule, node: fx.Node, name: str, layer: nn.Module) -> None:
    """Replace `node` by a call of `layer` (added as `name`) on the node's first input."""
    module.add_submodule(name, layer)
    with module.graph.inserting_after(node):
        new = module.graph.call_module(name, (node.args[0],))
    node.replace_all_uses_with(new)
    module.graph.erase_node(node)


def _layer_of(module: fx.GraphModule, node: fx.Node) -> nn.Module | None:
    """The nn.Linear / nn.Conv2d computing `node`, where it is aten.linear or aten.conv2d of
    an activation by parameters of the module (and, for a convolution, constant settings)."""
    if node.op != "call_function" or node.target not in (
        torch.ops.aten.linear.default,
        torch.ops.aten.conv2d.default,
    ):
        return None
    args = list(node.args)
    params = [_parameter(module, a) for a in args[1:3]]
    if params[0] is None or (len(args) > 2 and args[2] is not None and params[1] is None):
        return None
    weight, bias = params[0], params[1] if len(args) > 2 else None
    if node.target is torch.ops.aten.linear.default:
        layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    else:
        settings = args[3:] + [None] * (4 - len(args[3:]))
        stride, padding, dilation, groups = (
            d if v is None else v
            for v, d in zip(settings, ((1, 1), (0, 0), (1, 1), 1), strict=True)
        )
        if isinstance(padding, str) or any(isinstance(v, fx.Node) for v in settings):
            return None
        layer = nn.Conv2d(
            weight.shape[1] * groups, weight.shape[0], tuple(weight.shape[2:]), stride=stride,
            padding=padding, dilation=dilation, groups=groups, bias=bias is not None,
        )  # fmt: skip
    layer.weight = weight
    if bias is not None:
        layer.bias = bias
    return layer


def _parameter(module: fx.GraphModule, arg) -> nn.Parameter | None:
    if not isinstance(arg, fx.Node) or arg.op != "get_attr":
        return None
    owner, _, name = arg.target.rpartition(".")
    value = getattr(module.get_submodule(owner), name, None)
    return value if isinstance(value, nn.Parameter) else None
