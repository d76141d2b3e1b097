"""The GPU-readiness script (benchmarks/gpu_ready.py) in its reduced CPU form: every feature's
checked step runs, and the scaling table has a number per size and precision."""

import importlib.util
import math
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu_ready.py"


def test_the_gpu_readiness_script_runs_reduced_on_the_cpu(capsys):
    spec = importlib.util.spec_from_file_location("gpu_ready", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.main(["--device", "cpu", "--steps", "2", "--sizes", "1", "2",
                       "--precisions", "fp32", "--small"])
    assert sorted(out["sync_free"]) == sorted(module.FEATURES)
    assert all(0.0 <= v <= 1.0 for v in out["sync_free"].values())
    assert list(out["scaling"]["fp32"]) == [1, 2]
    assert all(math.isfinite(v) and v > 0 for v in out["scaling"]["fp32"].values())
    assert "muon" in capsys.readouterr().out
