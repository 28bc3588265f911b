"""docs/tutorial-model-family.md runs as written: its Python blocks, in order, on real data."""

import re
from pathlib import Path

import pytest

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial-model-family.md"


@pytest.mark.integration
def test_the_tutorial_trains_saves_loads_evaluates_and_annotates(shared_data, tmp_path, capsys):
    from phototag.models import registry

    blocks = re.findall(r"```python\n(.*?)```", TUTORIAL.read_text(), flags=re.DOTALL)
    assert len(blocks) == 2
    namespace = {"DATA": str(shared_data), "RUNS": str(tmp_path)}
    try:
        for block in blocks:
            exec(compile(block, str(TUTORIAL), "exec"), namespace)  # noqa: S102
    finally:
        registry._MODELS.pop("tutorial_mlp", None)
    o_f1, map_label = map(float, capsys.readouterr().out.splitlines()[0].split())
    assert o_f1 > 0.5 and map_label > 0.6  # far above chance on scene's 6 labels
    assert (tmp_path / "tutorial" / "weights.safetensors").is_file()
    assert namespace["loaded"].net_[0].weight.shape == (64, 294)
