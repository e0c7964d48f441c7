"""The config's optimizer, with the names PaddleSeg's configs use for it."""


def build_optimizer(builder, model):
    """The config's optimizer over `model`'s parameters, as SegBuilder builds it."""
    opt_cfg = builder.config.optimizer_cfg
    opt_cfg['type'] = {'sgd': 'SGD', 'adam': 'Adam'}.get(opt_cfg['type'], opt_cfg['type'])
    if opt_cfg['type'] == 'SGD' and 'momentum' in opt_cfg:
        opt_cfg['type'] = 'Momentum'
    return builder.build_component(opt_cfg)(model, builder.lr_scheduler)
