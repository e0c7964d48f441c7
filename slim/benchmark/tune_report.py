"""A recipe search's record: trials.json and trials.md (every trial, the finalists' scores
on the confirmation seeds, the user's own recipe) and trials.png."""

import json
import os


def trial_record(trial, optuna, confirm_scores=None):
    params = trial.params
    return {
        'trial': trial.number,
        'loss': params.get('loss'),
        'temperature': params.get('temperature'),
        'auto_ratio': params.get('auto_ratio'),
        'coef': trial.user_attrs.get('coef'),
        'state': 'diverged' if trial.user_attrs.get('diverged') else trial.state.name.lower(),
        'score': trial.value
        if trial.state == optuna.trial.TrialState.COMPLETE
        else (max(trial.intermediate_values.values()) if trial.intermediate_values else None),
        'confirm_scores': confirm_scores,
        'seconds': trial.user_attrs.get('seconds'),
    }


def write_tables(out_dir, records, alone_score, seed, seeds, alone_confirm, task, yours=None):
    """trials.json and trials.md: every trial's score on the search seed, the finalists'
    on the confirmation `seeds`; `yours`: the user's recipe's {score, confirm_scores}."""
    with open(os.path.join(out_dir, 'trials.json'), 'w') as f:
        json.dump(
            {
                'seed': seed,
                'confirm_seeds': seeds,
                'student_alone': alone_score,
                'student_alone_confirm': alone_confirm,
                'yours': yours,
                'trials': records,
            },
            f,
            indent=2,
        )

    def cell(value):
        return '-' if value is None else f'{value:.4f}'

    def confirm_cells(scores):
        return [cell(s) for s in scores] if scores else ['-'] * len(seeds)

    metric = task.primary_label
    alone = ', '.join(
        f'{cell(score)} (seed {s})'
        for s, score in zip([seed, *seeds], [alone_score, *alone_confirm])
    )
    lines = [
        f'Held-out {metric} of each trial with seed {seed} (pruned: its best evaluation before '
        f'it was stopped)'
        + (
            f', and of the finalists trained again with seeds {", ".join(map(str, seeds))}, '
            f'each seed on its own held-out fold (fold_K/): the pick is made on those alone'
            if seeds
            else ''
        )
        + f'. The student alone scores {alone}.',
        '',
    ]
    if yours is not None:
        own = [cell(yours['score']), *confirm_cells(yours['confirm_scores'])]
        lines += [
            "Your student config's own recipe (the incumbent): "
            + ', '.join(f'{v} (seed {s})' for s, v in zip([seed, *seeds], own))
            + '.',
            '',
        ]
    seed_columns = ''.join(f' seed {s} |' for s in seeds)
    lines += [
        f'| trial | loss | temperature | pull (distill_auto_ratio) | coef auto chose | state | '
        f'held-out {metric} |{seed_columns} seconds |',
        '|---|---|---|---|---|---|---|' + '---|' * len(seeds) + '---|',
    ]
    for r in records:
        ratio = '-' if r['auto_ratio'] is None else f'{r["auto_ratio"]:.3g}'
        coef = '-' if r['coef'] is None else f'{r["coef"]:.3g}'
        again = ''.join(f' {v} |' for v in confirm_cells(r['confirm_scores']))
        seconds = '-' if r['seconds'] is None else f'{r["seconds"]:.0f}'
        lines.append(
            f'| {r["trial"]} | {r["loss"]} | {r["temperature"]} | {ratio} | {coef} | '
            f'{r["state"]} | {cell(r["score"])} |{again} {seconds} |'
        )
    with open(os.path.join(out_dir, 'trials.md'), 'w') as f:
        f.write('\n'.join(lines) + '\n')


def plot_trials(path, records, alone_score, metric_label, own=None):
    """Each trial's held-out score in order, one colour per loss, pruned ones hollow; the
    student alone (and the user's own recipe) as a line."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4))
    for index, loss in enumerate(sorted({r['loss'] for r in records if r['loss']})):
        for pruned in (False, True):
            points = [
                (r['trial'], r['score'])
                for r in records
                if r['loss'] == loss
                and r['score'] is not None
                and (r['state'] == 'pruned') == pruned
            ]
            if points:
                colour = f'C{index}'
                axes.scatter(
                    *zip(*points),
                    color=colour if not pruned else 'none',
                    edgecolors=colour,
                    label=loss + (' (pruned)' if pruned else ''),
                )
    axes.axhline(alone_score, color='grey', linestyle='--', label='student alone')
    if own is not None and own.value is not None:
        axes.axhline(own.value, color='black', linestyle=':', label='your recipe')
    axes.set_xlabel('trial')
    axes.set_ylabel(f'held-out {metric_label}')
    axes.legend(fontsize='small')
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
