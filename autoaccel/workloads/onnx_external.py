"""ONNX files whose weights live in separate files (`save_as_external_data`, what
torch.onnx's dynamo exporter writes for large models): wherever autoaccel copies or
fingerprints a model, the data files go with it, or a copy is a model without weights and a
changed weight file is a stale cache hit.
"""

from __future__ import annotations

import shutil
from pathlib import Path


def external_files(path: Path) -> list[Path]:
    """The data files `path`'s tensors point at (resolved beside the model), in a fixed order."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data

    proto = onnx.load(str(path), load_external_data=False)
    locations = set()
    for tensor in _get_all_tensors(proto):
        if uses_external_data(tensor):
            entries = {e.key: e.value for e in tensor.external_data}
            locations.add(entries["location"])
    return [Path(path).parent / location for location in sorted(locations)]


def copy_onnx(source: Path, target: Path) -> None:
    """Copy a model and the data files it names, keeping their places relative to it."""
    shutil.copyfile(source, target)
    for data in external_files(source):
        relative = data.relative_to(Path(source).parent)
        (Path(target).parent / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data, Path(target).parent / relative)
