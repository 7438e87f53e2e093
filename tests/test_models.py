import math

import pytest
import torch
from torch import nn

import doctest

import nin_utils
from nin_utils import (NiN, conv_output_size, d2l_nin, count_flops, count_params, layer_table, nin_block, output_side,
                       params_by_layer, smallest_resolution)

# (in, out, kernel) of every conv in d2l's NiN, written out independently of models.py.
BLOCKS = [(1, 96, 11), (96, 256, 5), (256, 384, 3), (384, 10, 3)]


def conv_params(cin, cout, k):
    return cin * cout * k * k + cout


def expected_params(num_1x1):
    return sum(conv_params(cin, cout, k) + num_1x1 * conv_params(cout, cout, 1) for cin, cout, k in BLOCKS)


def expected_sides(n):
    """Side after each block and pool: conv 11/4/0, pool 3/2, conv 5/1/2, pool, conv 3/1/1, pool, conv 3/1/1."""
    sides = []
    for k, s, p in [(11, 4, 0), (3, 2, 0), (5, 1, 2), (3, 2, 0), (3, 1, 1), (3, 2, 0), (3, 1, 1)]:
        n = math.floor((n + 2 * p - k) / s) + 1
        sides.append(n)
    return sides


def test_parameter_counts_match_the_published_numbers_and_an_independent_sum():
    assert count_params(NiN()) == expected_params(2) == 1_992_166
    assert count_params(NiN(num_1x1=1)) == expected_params(1) == 1_769_112
    assert count_params(d2l_nin()) == 1_992_166


def test_params_by_layer_lists_every_conv():
    per_layer = params_by_layer(NiN())
    assert len(per_layer) == 12
    assert per_layer["features.0.0"] == 1 * 96 * 11 * 11 + 96
    assert per_layer["classifier.1.4"] == 10 * 10 + 10
    assert sum(per_layer.values()) == 1_992_166


@pytest.mark.parametrize("size, sides", [(224, [54, 26, 26, 12, 12, 5, 5]), (96, [22, 10, 10, 4, 4, 1, 1])])
def test_shapes_through_the_network(size, sides):
    assert expected_sides(size) == sides
    table = layer_table(NiN(), size)
    convs_and_pools = [row.output_shape for row in table.rows if row.layer.startswith(("Conv2d(1,", "MaxPool", "Conv2d(96, 256", "Conv2d(256, 384", "Conv2d(384, 10"))]
    assert [shape[1] for shape in convs_and_pools] == sides
    assert [shape[0] for shape in convs_and_pools] == [96, 96, 256, 256, 384, 384, 10]
    assert table.rows[-1].output_shape == (10,)
    assert NiN()(torch.randn(3, 1, size, size)).shape == (3, 10)


@pytest.mark.parametrize("size, gflops", [(224, 1.52), (96, 0.22)])
def test_flops_agree_between_flopcounter_table_and_formula(size, gflops):
    model = NiN()
    s = expected_sides(size)
    macs = 0
    for (cin, cout, k), side in zip(BLOCKS, [s[0], s[2], s[4], s[6]]):
        macs += side * side * (cout * cin * k * k + 2 * cout * cout)  # k x k conv + two 1x1 convs
    assert count_flops(model, size) == layer_table(model, size).total_flops == 2 * macs
    assert round(2 * macs / 1e9, 2) == gflops


def test_fc_head_parameters_and_fixed_resolution():
    model = NiN(head="fc", resolution=224)
    backbone = expected_params(2) - (conv_params(384, 10, 3) + 2 * conv_params(10, 10, 1))
    head = (384 * 5 * 5 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 10 + 10)
    assert count_params(model) == backbone + head
    assert model(torch.randn(2, 1, 224, 224)).shape == (2, 10)
    with pytest.raises(ValueError, match="built for 224x224"):
        model(torch.randn(1, 1, 96, 96))


def test_gap_head_accepts_any_size_from_the_minimum():
    model = NiN()
    assert model.min_resolution == 67
    for size in (67, 100, 224, 300):
        assert model(torch.randn(1, 1, size, size)).shape == (1, 10)


def test_smallest_resolution_of_any_conv_pool_stack():
    # 5x5 conv: n - 4; then a 2x2 pool, stride 2, needs at least 2: so n >= 6.
    stack = nn.Sequential(nn.Conv2d(1, 4, 5), nn.ReLU(), nn.MaxPool2d(2))
    assert [output_side(stack, n) for n in (5, 6, 9, 10)] == [0, 1, 2, 3]
    assert smallest_resolution(stack) == 6
    assert smallest_resolution(NiN().features) == NiN().min_resolution == 67


def test_too_small_input_is_a_clear_error():
    with pytest.raises(ValueError, match="too small.*67x67"):
        NiN()(torch.randn(1, 1, 28, 28))


def test_wrong_channel_count_is_a_clear_error():
    with pytest.raises(ValueError, match="1 input channel.*got 3"):
        NiN()(torch.randn(1, 3, 96, 96))
    with pytest.raises(ValueError, match="batch of images"):
        NiN()(torch.randn(1, 96, 96))


def test_nin_block_structure_and_shape():
    block = nin_block(3, 16, kernel_size=5, stride=2, padding=1, num_1x1=2)
    kinds = [type(m) for m in block]
    assert kinds == [nn.Conv2d, nn.ReLU, nn.Conv2d, nn.ReLU, nn.Conv2d, nn.ReLU]
    assert [m.kernel_size for m in block if isinstance(m, nn.Conv2d)] == [(5, 5), (1, 1), (1, 1)]
    side = conv_output_size(32, 5, 2, 1)
    assert side == 15
    assert block(torch.randn(2, 3, 32, 32)).shape == (2, 16, side, side)
    assert isinstance(nin_block(3, 16, 3, final_relu=False)[-1], nn.Conv2d)


def test_zero_initialised_logits_give_a_uniform_guess():
    model = NiN().eval()
    logits = model(torch.randn(4, 1, 96, 96))
    assert torch.equal(logits, torch.zeros(4, 10))
    d2l = d2l_nin().eval()
    assert (d2l(torch.randn(4, 1, 96, 96)) >= 0).all()  # ReLU before GAP: logits never negative


def test_invalid_options_are_clear_errors():
    with pytest.raises(ValueError, match="zero_init_last"):
        NiN(final_relu=True)
    with pytest.raises(ValueError, match="Unknown head"):
        NiN(head="mlp")
    with pytest.raises(ValueError, match="Unknown init"):
        NiN(init="orthogonal")
    with pytest.raises(ValueError, match="below the smallest"):
        NiN(head="fc", resolution=50)


def test_kaiming_init_keeps_activation_scale_where_xavier_shrinks_it():
    x = torch.randn(64, 1, 96, 96)
    rms = {init: NiN(init=init, zero_init_last=False).features(x).pow(2).mean().sqrt().item()
           for init in ("kaiming", "xavier")}
    assert rms["kaiming"] > 4 * rms["xavier"]


def test_d2l_nin_is_d2ls_network():
    d2l = d2l_nin()
    head_block = d2l.classifier[1]
    assert isinstance(head_block[-1], nn.ReLU)  # a ReLU before GAP
    assert head_block[-2].weight.abs().sum() > 0  # a random, not zeroed, logit layer
    conv = d2l.features[0][0]
    bound = math.sqrt(6 / (conv.in_channels * 121 + conv.out_channels * 121))  # Xavier-uniform's bound
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound


def test_reset_parameters_keeps_the_init_the_model_was_built_with():
    def weight_stds(model):
        return [(m.weight.std().item(), m.weight[0].numel(), m.weight.shape[0] * m.weight[0, 0].numel())
                for m in model.features.modules() if isinstance(m, nn.Conv2d)]

    d2l = d2l_nin()
    d2l.reset_parameters()
    for std, fan_in, fan_out in weight_stds(d2l):
        assert std == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.2)  # Xavier's, not Kaiming's
    d2l.reset_parameters("kaiming")  # an explicit choice still wins
    for std, fan_in, _ in weight_stds(d2l):
        assert std == pytest.approx(math.sqrt(2 / fan_in), rel=0.2)
    kaiming = NiN()
    kaiming.reset_parameters()
    assert all(std == pytest.approx(math.sqrt(2 / fan_in), rel=0.2) for std, fan_in, _ in weight_stds(kaiming))


@pytest.mark.parametrize("module", ["models", "counting"])
def test_docstring_examples_run(module):
    result = doctest.testmod(getattr(nin_utils, module), raise_on_error=False)
    assert result.attempted > 0 and result.failed == 0, result


# ----------------------------------------------------------------- the paper authors' MNIST NiN

def test_the_authors_mnist_network_as_released_has_their_parameter_count_and_a_7x7_map():
    from nin_utils import class_maps, layer_table, mnist_nin, mnist_nin_as_released
    released = mnist_nin_as_released()
    assert count_params(released) == 349_674  # NIN/mnist_def: 96-64-48 / 128-96-48 / 128-96-10, 5x5 kernels
    widths = [m.out_channels for m in released.modules() if isinstance(m, nn.Conv2d)]
    assert widths == [96, 64, 48, 128, 96, 48, 128, 96, 10]
    net = mnist_nin().eval()
    assert tuple(class_maps(net, torch.zeros(2, 1, 28, 28)).shape) == (2, 10, 7, 7)  # GAP averages 49
    assert layer_table(net, 28).rows[-1].output_shape == (10,)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == 8  # before every ReLU
    assert not any(isinstance(m, nn.Dropout) and m.p > 0 for m in net.modules())


def test_model_args_rebuild_the_same_network():
    from nin_utils import d2l_nin, mnist_nin
    for net in (NiN(), d2l_nin(), mnist_nin(), mnist_nin(head="fc", resolution=28, num_1x1=1)):
        rebuilt = NiN(**net.model_args)
        rebuilt.load_state_dict(net.state_dict())
        side = max(net.min_resolution, 28)  # 67 for d2l's arch, 28 for the MNIST one
        x = torch.rand(2, 1, side, side)
        assert torch.equal(rebuilt.eval()(x), net.eval()(x))


def test_nin_block_takes_one_width_or_one_per_conv():
    assert str(nin_block(3, 8, 3)) == str(nin_block(3, [8, 8, 8], 3))
    block = nin_block(1, [96, 64, 48], 5, padding=2, batch_norm=True, final_relu=False)
    convs = [m for m in block if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 64, 48] and [c.kernel_size for c in convs][1:] == [(1, 1)] * 2
    assert [c.bias is None for c in convs] == [True, True, False]  # BatchNorm before a ReLU makes a bias redundant
    assert not isinstance(block[-1], nn.ReLU)


def test_ceil_mode_pooling_is_counted_as_pytorch_computes_it():
    from nin_utils import conv_output_size, output_side
    pool = nn.MaxPool2d(3, stride=2, ceil_mode=True)
    for n in range(3, 40):
        assert conv_output_size(n, 3, 2, ceil_mode=True) == pool(torch.zeros(1, 1, n, n)).shape[-1], n
        assert output_side(nn.Sequential(pool), n) == pool(torch.zeros(1, 1, n, n)).shape[-1]
