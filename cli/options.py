"""Option types and the shared problem options (shapes and conv arguments) of ``bench`` and ``plan``."""
import functools

import click

from numba_conv3d.planner import PADDING_STRINGS, SUPPORTED_DTYPES
from numba_conv3d.shape_rules import PADDING_MODES


class IntList(click.ParamType):
    """Comma-separated ints, e.g. ``1,16,32,32,32``; ``lengths`` lists the counts allowed."""

    name = "ints"

    def __init__(self, lengths, words=()):
        self.lengths = lengths
        self.words = words

    def convert(self, value, param, ctx):
        if not isinstance(value, str):
            return value
        if value in self.words:
            return value
        try:
            numbers = tuple(int(part) for part in value.split(","))
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of integers", param, ctx)
        if len(numbers) not in self.lengths:
            counts = " or ".join(map(str, self.lengths))
            self.fail(f"{value!r} has {len(numbers)} numbers, expected {counts}", param, ctx)
        return numbers[0] if len(numbers) == 1 and 1 in self.lengths else numbers


def problem_options(required):
    """Decorator adding --input, --weight, --stride, --padding, --dilation, --groups, --padding-mode,
    --no-bias and --dtype; ``required`` makes --input and --weight mandatory."""
    options = [
        click.option("--input", "input_shape", type=IntList((4, 5)), required=required,
                     help="Input shape N,C,D,H,W (or unbatched C,D,H,W)."),
        click.option("--weight", "weight_shape", type=IntList((5,)), required=required,
                     help="Weight shape O,I,KD,KH,KW (I = C / groups)."),
        click.option("--stride", type=IntList((1, 3)), default="1", show_default=True,
                     help="Int or a,b,c."),
        click.option("--padding", type=IntList((1, 3), PADDING_STRINGS), default="0",
                     show_default=True, help="Int, a,b,c, 'valid' or 'same'."),
        click.option("--dilation", type=IntList((1, 3)), default="1", show_default=True,
                     help="Int or a,b,c."),
        click.option("--groups", type=int, default=1, show_default=True),
        click.option("--padding-mode", type=click.Choice(PADDING_MODES), default="zeros",
                     show_default=True),
        click.option("--no-bias", is_flag=True, help="Convolve without a bias."),
        click.option("--dtype", type=click.Choice(SUPPORTED_DTYPES), default="float32",
                     show_default=True, help="The problem's dtype (bench: also the networks suite's)."),
    ]
    return lambda command: functools.reduce(lambda cmd, option: option(cmd), reversed(options),
                                            command)


def conv_kwargs(stride, padding, dilation, groups, padding_mode):
    """The ``conv3d`` keyword arguments of the problem options."""
    return dict(stride=stride, padding=padding, dilation=dilation, groups=groups,
                padding_mode=padding_mode)


def checked(case):
    """Plan ``case`` (a BenchCase) now, so the planner's ValueError/TypeError becomes a usage error:
    exit status 2 and one ``Error:`` line, before anything runs."""
    try:
        case.plan()
    except (ValueError, TypeError) as err:
        raise click.UsageError(str(err)) from None
    return case
