"""The networks suite: the layer tables (shapes chain through each network, every layer plans, the
video ResNets' multiply-adds are torchvision's), the timing harness on a tiny network, and the CLI."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

import numba_conv3d.network_bench as network_bench
import numba_conv3d.networks as networks
from numba_conv3d.cli import main
from numba_conv3d.grad_planner import plan_conv_transpose3d
from numba_conv3d.planner import plan_conv3d


@pytest.mark.parametrize("name", networks.NETWORKS)
@pytest.mark.parametrize("batch", [1, 2])
def test_every_layer_plans_with_torch_rules_and_its_output_shape(name, batch):
    layers = networks.network_layers(name, batch)
    assert sum(layer.count for layer in layers) == len(networks.NETWORKS[name](batch))
    assert not layers[0].input_grad and layers[0].input_shape[1] in (1, 3)
    for layer in layers:
        assert layer.input_shape[0] == batch
        kwargs = {key: value for key, value in layer.kwargs.items() if key != "output_padding"}
        if layer.transposed:
            x = np.empty(layer.input_shape, np.float32)
            w = np.empty(layer.weight_shape, np.float32)
            plan = plan_conv_transpose3d("test", x, w, None, output_padding=layer.kwargs["output_padding"],
                                         groups=layer.groups, dilation=1, **kwargs)
            assert plan.input_shape == layer.output_shape
        else:
            plan = plan_conv3d(layer.input_shape, layer.weight_shape, bias=layer.bias, **kwargs)
            assert plan.output_shape == layer.output_shape
            assert plan.macs == layer.macs


@pytest.mark.parametrize("name", networks.NETWORKS)
def test_each_layer_reads_an_activation_written_before_it(name):
    """Every layer's input is the data, an earlier output, a concatenation of two earlier outputs of its
    extents, an earlier output pooled to its extents (max pools) or to 1x1x1 (squeeze-excitation)."""
    layers = networks.NETWORKS[name](1)
    seen = [layers[0].input_shape]
    for layer in layers:
        channels, size = layer.input_shape[1], layer.input_shape[2:]
        same_size = [shape[1] for shape in seen if shape[2:] == size]
        concatenated = {a + b for a in same_size for b in same_size}
        pooled = {shape[1] for shape in seen if all(n >= m for n, m in zip(shape[2:], size))}
        assert channels in same_size or channels in concatenated or channels in pooled, layer.name
        seen.append(layer.output_shape)


@pytest.mark.parametrize("name, gmacs", [("r3d_18", 40.70), ("mc3_18", 43.34), ("r2plus1d_18", 40.52)])
def test_video_resnets_have_torchvisions_multiply_adds(name, gmacs):
    total = sum(layer.macs * layer.count for layer in networks.network_layers(name))
    assert round(total / 1e9, 2) == gmacs


def _tiny(batch=1):
    net = networks._Builder(batch, 2, (4, 5, 6))
    net.conv("conv", 8, 3, 1, 1, bias=True)
    net.conv("down", 8, 3, 2, 1)
    upsampled = net.up("up", 4, 3, 2, 1, 1)
    net.conv("again", 8, 3, 1, 1, bias=True)
    net.at(upsampled)
    net.conv("again", 8, 3, 1, 1, bias=True)
    return net.layers


@pytest.fixture
def tiny_network(monkeypatch):
    monkeypatch.setitem(networks.NETWORKS, "tiny", _tiny)
    return "tiny"


@pytest.mark.parametrize("timing", network_bench.TIMINGS)
def test_harness_times_each_distinct_layer_and_sums_by_count(tiny_network, timing):
    (result,) = network_bench.run_networks([tiny_network], repeat=1, warmup=0, settle=0, timing=timing)
    assert result.timing == timing and result.as_dict()["timing"] == timing
    assert [r.layer.name for r in result.layers] == ["conv", "down", "up", "again"]
    assert [r.layer.count for r in result.layers] == [1, 1, 1, 2]
    expected = sum(r.ours_forward_s * r.layer.count for r in result.layers)
    assert result.total("ours_forward_s") == pytest.approx(expected)
    if result.ratio("forward") is not None:  # torch installed: results compared with its forward
        assert all(r.max_relative_difference < 1e-5 for r in result.layers)
        assert all(r.training_ratio > 0 for r in result.layers)
    report = network_bench.format_networks([result])
    assert "tiny (batch 1)" in report and "geometric mean" in report
    assert ("network order" in report) == (timing == "network")


def test_harness_refuses_an_unknown_timing(tiny_network):
    with pytest.raises(ValueError, match="timing must be one of"):
        network_bench.run_networks([tiny_network], timing="pass")


def test_cli_networks_suite_prints_json_and_plot(tiny_network, tmp_path, monkeypatch):
    runner = CliRunner()
    listed = runner.invoke(main, ["bench", "--suite", "networks", "--list"], catch_exceptions=False)
    assert listed.exit_code == 0 and "layer4.0.conv2" in listed.output
    pytest.importorskip("matplotlib", reason="--plot needs matplotlib (the plot extra)")
    out, picture = tmp_path / "networks.json", tmp_path / "networks.png"
    result = runner.invoke(main, ["bench", "--suite", "networks", "--network", "r3d_18", "--forward-only",
                                  "--timing", "layer", "--repeat", "1", "--warmup", "0", "--quiet", "--json",
                                  str(out), "--plot", str(picture)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "r3d_18" in result.output and "geometric mean" in result.output
    assert "each layer alone" in result.output
    record = json.loads(out.read_text())
    assert record["networks"][0]["network"] == "r3d_18" and len(record["networks"][0]["layers"]) == 11
    assert record["networks"][0]["timing"] == "layer"
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
