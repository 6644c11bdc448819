"""Blocks of a backbone, bottom to top, derived from its module tree (not hard-coded per family).

A block is a unit of gradual unfreezing and layer-wise learning-rate decay: ResNet gives
`stem, layer1 … layer4`; MobileNet/EfficientNet the entries of `features` (plus any pre-head layers);
ViT `conv_proj`, the encoder layers and the final norm; Swin/ConvNeXt their stages.
"""

from dataclasses import dataclass, field

from torch import nn

from workers.pipeline.backbones import Grafted


@dataclass
class Block:
    """A named group of backbone parameters."""

    name: str
    params: list[nn.Parameter] = field(default_factory=list)
    modules: list[nn.Module] = field(default_factory=list)


def _count(module: nn.Module, skip: set[int]) -> int:
    return sum(p.numel() for p in module.parameters() if id(p) not in skip)


def _level(module: nn.Module, prefix: str, skip: set[int]) -> list[Block]:
    kids = [(n, m) for n, m in module.named_children() if _count(m, skip) > 0]
    loose = [p for p in module.parameters(recurse=False) if id(p) not in skip]
    total = sum(_count(m, skip) for _, m in kids)
    if not kids:
        return [Block(prefix.rstrip(".") or "stem", loose, [module])] if loose else []
    blocks: list[Block] = []
    biggest = max(kids, key=lambda kid: _count(kid[1], skip))
    containers = [m for _, m in kids if any(True for _ in m.children())]
    expand = biggest[1] in containers and len(containers) < 4 and _count(biggest[1], skip) > 0.5 * total
    pending_leaves: list[tuple[str, nn.Module]] = []

    def flush() -> None:
        if pending_leaves:
            name = "stem" if not blocks and not prefix else prefix + "+".join(n for n, _ in pending_leaves)
            params = [p for _, m in pending_leaves for p in m.parameters() if id(p) not in skip]
            blocks.append(Block(name, params, [m for _, m in pending_leaves]))
            pending_leaves.clear()

    for name, child in kids:
        if expand and child is biggest[1]:
            flush()
            blocks += _level(child, f"{prefix}{name}.", skip)
        elif not any(True for _ in child.children()):
            pending_leaves.append((name, child))
        else:
            flush()
            params = [p for p in child.parameters() if id(p) not in skip]
            blocks.append(Block(prefix + name, params, [child]))
    flush()
    if loose and blocks:
        blocks[0].params = loose + blocks[0].params
    return blocks


def backbone_blocks(grafted: Grafted) -> list[Block]:
    """The backbone's blocks in forward order (bottom first); the head is excluded."""
    skip = {id(p) for p in grafted.head.parameters()}
    blocks = _level(grafted.model, "", skip)
    head_modules = {id(m) for m in grafted.head.modules()}
    for block in blocks:
        block.modules = [m for m in block.modules if id(m) not in head_modules]
    return blocks
