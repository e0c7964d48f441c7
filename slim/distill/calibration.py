"""`coef: auto`: a term's weight set from gradients when the term first trains.

A hand-found coefficient is right for one pair, one loss and one optimizer: the same
number can be a light touch for one student and swamp the labels of another, because the
loss values and their gradients differ in scale by orders of magnitude between losses,
temperatures and models. What transfers is the balance between the pulls on the
student's weights: `auto` measures, on the term's first batch, the norm of the gradient
that the term's unweighted loss and the supervised loss each give the student's
parameters, and sets

    coef = GRADIENT_RATIO * |grad supervised| / |grad term|

so the term pulls with GRADIENT_RATIO times the labels' strength at the start; several
auto terms share that pull equally (each gets GRADIENT_RATIO / their number); a student
config's `distill_auto_ratio` replaces GRADIENT_RATIO for its run. The value
is fixed from then on (logged, and saved in the checkpoint so a resumed run keeps it).
docs/recipes.md has the measurements behind GRADIENT_RATIO.
"""

import math

import paddle

AUTO = 'auto'
GRADIENT_RATIO = 0.5


def gradient_norm(loss, parameters):
    """The L2 norm of d loss / d parameters, leaving the graph for the step's backward."""
    grads = paddle.grad([loss], parameters, retain_graph=True, allow_unused=True)
    squares = [paddle.sum(paddle.square(g)) for g in grads if g is not None]
    return float(paddle.add_n(squares)) ** 0.5 if squares else 0.0


def auto_coefficients(supervised, term_losses, parameters, ratio=GRADIENT_RATIO):
    """{term index: coef} for the unweighted term losses {index: loss}, against the
    supervised loss (a scalar), from their gradients at `parameters`, each term pulling
    `ratio` times as hard as the labels; None for a term that gives no gradient (there is
    nothing to balance). Under data parallelism the squared norms are averaged over the
    ranks, so all choose the same."""
    norms = [gradient_norm(supervised, parameters)] + [
        gradient_norm(loss, parameters) for loss in term_losses.values()
    ]
    if paddle.distributed.get_world_size() > 1:
        squares = paddle.to_tensor([n * n for n in norms], dtype='float64')
        paddle.distributed.all_reduce(squares)
        norms = [math.sqrt(float(s) / paddle.distributed.get_world_size()) for s in squares.numpy()]
    supervised_norm, term_norms = norms[0], norms[1:]
    return {
        index: (ratio * supervised_norm / norm if norm > 0 else None)
        for index, norm in zip(term_losses, term_norms)
    }
