"""The config's supervised `loss` (PaddleSeg's form: one type and coef per model output)."""


class SupervisedLoss:
    """{term name: coef * loss} for a model's list of outputs and the labels.

    Built from SegBuilder.loss ({'types': [...], 'coef': [...]}); a model with several
    outputs (auxiliary heads) gets one term per output, named apart."""

    def __init__(self, loss_cfg):
        self.types, self.coefs = loss_cfg['types'], loss_cfg['coef']
        if len(self.types) == 1 and len(self.coefs) > 1:
            self.types = self.types * len(self.coefs)

    def __call__(self, logits_list, label):
        terms = {}
        for output, (logits, loss, coef) in enumerate(zip(logits_list, self.types, self.coefs)):
            name = type(loss).__name__ + (f'[{output}]' if output else '')
            if name.startswith('MixedLoss'):
                for part, value in enumerate(loss(logits, label)):
                    terms[f'{name}.{part}'] = coef * value
            else:
                terms[name] = coef * loss(logits, label)
        return terms
