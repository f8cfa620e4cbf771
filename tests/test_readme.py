"""The README's Python examples run, in order, in one namespace."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    # The recipe block is shown for reading (it is a function body); the others are programs.
    for block in blocks:
        if block.lstrip().startswith("ScanLayer = nn.scan"):
            continue
        exec(compile(block, str(README), "exec"), namespace)
    assert namespace["final"].shape == (8, 64)
    assert namespace["variables"]["params"]["Dense_0"]["kernel"].shape == (12, 64, 256)
    assert namespace["y"].shape == (8 * 64,)
