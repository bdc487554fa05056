"""The numba-conv3d command line, through click's CliRunner."""
import json
import sys

import numba
import numpy as np
import pytest
from click.testing import CliRunner

import numba_conv3d.bench_cases
import numba_conv3d.benchmark
from numba_conv3d import __version__
from numba_conv3d.cli import main

TINY = ["--input", "1,2,6,6,6", "--weight", "3,2,3,3,3", "--repeat", "1", "--warmup", "0"]


def invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_version_and_help_with_examples():
    assert __version__ in invoke("--version").output
    for command in ([], ["bench"], ["plan"], ["info"]):
        result = invoke(*command, "--help")
        assert result.exit_code == 0 and "Examples:" in result.output


def test_bench_custom_case_prints_the_table():
    result = invoke("bench", *TINY, "--padding", "same", "--padding-mode", "reflect", "--quiet")
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("custom"))
    assert "1x2x6x6x6 * 3x2x3x3x3 float32" in row
    assert "GEMM peak" in result.output


def test_bench_suite_case_list_threads_dtype_and_json(tmp_path):
    listing = invoke("bench", "--list")
    assert listing.exit_code == 0 and "doc-example" in listing.output
    path = tmp_path / "out.json"
    result = invoke("bench", "--case", "one-channel-k7-reflect", "--repeat", "1", "--threads", "1",
                    "--json", str(path))
    assert result.exit_code == 0, result.output
    assert numba.get_num_threads() == numba.config.NUMBA_NUM_THREADS  # --threads is restored
    record = json.loads(path.read_text())
    (row,) = record["results"]
    assert row["case"] == "one-channel-k7-reflect" and row["ours_ms"] > 0
    assert row["gflops"] == pytest.approx(row["flops"] / row["ours_ms"] / 1e6)
    assert record["environment"]["versions"]["numba_conv3d"] == __version__
    assert set(record["peak_gflops"]) == {"float32"}


def test_bench_other_options(tmp_path):
    path = tmp_path / "c.json"
    result = invoke("bench", *TINY, "--stride", "1,2,1", "--dilation", "1", "--groups", "1",
                    "--no-bias", "--dtype", "complex64", "--json", str(path))
    assert result.exit_code == 0, result.output
    (row,) = json.loads(path.read_text())["results"]
    assert row["dtype"] == "complex64" and row["bias"] is False
    assert row["kwargs"]["stride"] == [1, 2, 1]


def test_bench_without_torch_says_the_peer_is_absent(monkeypatch):
    monkeypatch.setattr(numba_conv3d.benchmark, "_torch", lambda: None)
    result = invoke("bench", *TINY)
    assert result.exit_code == 0, result.output
    assert "torch is not installed" in result.output and "absent" in result.output


def test_plan_text_and_json():
    args = ["plan", "--input", "1,3,6,5,4", "--weight", "6,3,2,3,4", "--padding", "same"]
    text = invoke(*args)
    assert text.exit_code == 0
    assert "D 0+1, H 1+1, W 1+2" in text.output and "(1, 6, 6, 5, 4)" in text.output
    record = json.loads(invoke(*args, "--json").output)
    assert record["pads"] == [[0, 1], [1, 1], [1, 2]] and record["output_shape"] == [1, 6, 6, 5, 4]
    assert record["algorithm"] == "blocked" and record["flops"] > 0  # 6 output channels, float32
    assert "side by side" not in text.output and record["merged_input_size"] == [6, 5, 4]


def test_plan_shows_rows_merged_for_pointwise_in_plane():
    args = ["plan", "--input", "1,8,4,32,32", "--weight", "16,8,3,1,1", "--padding", "1,0,0"]
    assert "side by side, input (D, H, W) (4, 1, 1024)" in invoke(*args).output
    assert json.loads(invoke(*args, "--json").output)["merged_input_size"] == [4, 1, 1024]


def test_info_text_and_json():
    text = invoke("info")
    assert text.exit_code == 0 and "numba_conv3d " + __version__ in text.output
    record = json.loads(invoke("info", "--json").output)
    assert record["threads"] >= 1 and record["threading_layer"]
    assert {"numba", "llvmlite", "numpy", "torch"} <= set(record["versions"])
    assert record["bfloat16_dot_products"] == ("avx512bf16" in record["simd"])
    assert isinstance(record["amx_bfloat16_tiles"], bool)
    assert "bfloat16 by" in text.output


BAD = {
    "malformed shape": (["bench", "--input", "1,2,x", "--weight", "1,2,1,1,1"], "--input"),
    "shape of 3": (["plan", "--input", "2,3,4", "--weight", "1,2,1,1,1"], "has 3 numbers"),
    "unknown mode": (["bench", *TINY, "--padding-mode", "mirror"], "--padding-mode"),
    "unknown padding word": (["plan", "--input", "1,2,4,4,4", "--weight", "1,2,1,1,1", "--padding",
                              "full"], "--padding"),
    "unknown case": (["bench", "--case", "nope"], "--case"),
    "planner rejects kernel": (["plan", "--input", "1,2,4,4,4", "--weight", "1,2,5,1,1"],
                               "smaller than the dilated kernel"),
    "same with stride": (["bench", *TINY, "--padding", "same", "--stride", "2"], "padding='same'"),
    "groups mismatch": (["plan", "--input", "1,2,4,4,4", "--weight", "3,2,1,1,1", "--groups", "2"],
                        "groups=2"),
    "weight without input": (["bench", "--weight", "1,2,1,1,1"], "both --input and --weight"),
    "cpu case on cuda": (["bench", "--backend", "cuda", "--case", "pointwise"], "not in the cuda suite"),
    "too many threads": (["bench", *TINY, "--threads", "4096"], "--threads"),
    "zero repeat": (["bench", *TINY, "--repeat", "0"], "--repeat"),
    "plan without shapes": (["plan"], "--input"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_exits_2_with_one_error_line(case):
    args, fragment = BAD[case]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and fragment in errors[0]


def test_cuda_bench_without_a_gpu_is_a_usage_error(monkeypatch):
    monkeypatch.setattr(sys.modules["numba_conv3d.cli.bench"], "cuda_devices", lambda: [])
    result = CliRunner().invoke(main, ["bench", *TINY, "--backend", "cuda"])
    assert result.exit_code == 2
    assert "Error: --backend cuda: no CUDA GPU is available" in result.output


def test_list_shows_the_chosen_backends_suite():
    for backend, suite in numba_conv3d.bench_cases.SUITES.items():
        listed = invoke("bench", "--list", "--backend", backend).output
        assert [line.split()[0] for line in listed.splitlines()] == [case.name for case in suite]


def test_failure_inside_a_run_exits_non_zero_with_the_reason(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr("numba_conv3d.benchmark.run_case", broken)
    result = CliRunner().invoke(main, ["bench", *TINY])
    assert result.exit_code == 1
    assert "Error: the benchmark failed: RuntimeError: out of memory" in result.output
    assert "Traceback" not in result.output


def test_progress_bar_only_on_a_terminal_and_not_when_quiet(monkeypatch, capsys):
    from numba_conv3d.cli.bench import _progress

    assert _progress(quiet=True) is iter
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    assert _progress(quiet=False) is iter
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    cases = list(numba_conv3d.bench_cases.DEFAULT_SUITE[:2])
    assert list(_progress(quiet=False)(cases)) == cases


def test_plan_for_cuda_needs_no_gpu():
    text = invoke("plan", "--input", "1,1,32,32,32", "--weight", "1,1,7,7,7", "--padding", "3",
                  "--backend", "cuda").output
    assert "algorithm    cuda-row-tiled" in text
    assert "bytes of shared memory per thread block" in text
    record = json.loads(invoke("plan", "--input", "1,4,8,8,8", "--weight", "8,4,3,3,3", "--backend",
                               "cuda", "--json").output)
    assert (record["backend"], record["algorithm"]) == ("cuda", "cuda-implicit-gemm")


def test_full_suite_lists_every_class():
    names = [line.split()[0] for line in invoke("bench", "--full", "--list").output.splitlines()]
    assert names == [case.name for case in numba_conv3d.bench_cases.FULL_SUITE]
    for fragment in ("dense-k3", "strided", "doc-example-2", "stem", "1x7x7", "dilated", "grouped",
                     "depthwise", "pointwise", "one-channel-k9-192^3", "float64", "complex64"):
        assert any(fragment in name for name in names), fragment


def test_scipy_peer_computes_the_same_convolution():
    pytest.importorskip("scipy")
    from numba_conv3d.bench_cases import BenchCase
    from numba_conv3d.benchmark import _Device, _scipy_peer

    for mode in ("zeros", "reflect", "replicate", "circular"):
        case = BenchCase("tiny", (1, 1, 7, 8, 9), (1, 1, 2, 3, 4), {"padding": "same", "padding_mode": mode},
                         "float64")
        x, w, b = case.operands()
        ours = numba_conv3d.conv3d(x, w, b, **case.kwargs)[0, 0]
        np.testing.assert_allclose(_scipy_peer(case, _Device("cpu"), x, w, b)(), ours, rtol=1e-10,
                                   atol=1e-10)
    strided = BenchCase("strided", (1, 1, 7, 8, 9), (1, 1, 3, 3, 3), {"stride": 2})
    assert _scipy_peer(strided, _Device("cpu"), *strided.operands()) is None


def test_ratio_summary_is_the_geometric_mean_and_names_the_slowest_case():
    case = numba_conv3d.bench_cases.BenchCase("a", (1, 1, 4, 4, 4), (1, 1, 1, 1, 1))
    results = [numba_conv3d.benchmark.BenchResult(
        numba_conv3d.bench_cases.BenchCase(name, case.input_shape, case.weight_shape), 1, ours, ours,
        {"torch": 1.0}, None) for name, ours in (("fast", 0.25), ("slow", 2.0), ("even", 1.0))]
    summary = numba_conv3d.benchmark.ratio_summary(results)
    assert summary["geomean_ratio"] == pytest.approx(2 ** (1 / 3))
    assert (summary["cases"], summary["slowest_case"], summary["slowest_ratio"]) == (3, "slow", 0.5)
    assert "geometric mean of the ratio over 3 cases: 1.26; slowest: slow (0.50)" in (
        numba_conv3d.benchmark.format_report({}, results))
    no_peer = [numba_conv3d.benchmark.BenchResult(case, 1, 1.0, 1.0, {}, None)]
    assert numba_conv3d.benchmark.ratio_summary(no_peer) is None


def test_bench_pauses_settle_seconds_before_every_timed_run(monkeypatch):
    pauses = []
    monkeypatch.setattr(numba_conv3d.benchmark.time, "sleep", pauses.append)
    result = invoke("bench", *TINY, "--repeat", "3", "--warmup", "0", "--settle", "0.125", "--quiet")
    assert result.exit_code == 0, result.output
    sides = 2 if numba_conv3d.benchmark._torch() else 1
    assert pauses == [0.125] * (3 * sides)
