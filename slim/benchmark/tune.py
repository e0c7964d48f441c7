"""A distillation recipe searched for one teacher-student pair (tools/tune.py).

Trials are short distill_train.py runs through the real CLI. Each trains on most of the
training list and is scored on the rest (a split carved once, with a fixed seed): the val
set is never read, so the recipe it picks can be judged on val afterwards. The search
starts from the recipes the tool ships (SHIPPED_STARTS, each with `coef: auto`), so what
it finds is compared with them on the user's own pair; a classifier's search leaves out
the losses over spatial maps (CWD), which have nothing to compare in [N, C] logits. Where
the student config has distill terms of its own (the user's recipe), that recipe is
trained on the split too and is the incumbent. A trial's coefficient is always
`auto`, at a searched `distill_auto_ratio` (how hard the term pulls against the labels):
raw coefficients differ in scale by orders of magnitude between losses, temperatures and
pairs, a pull does not, so every trial lands at a scale that can work. Optuna then chooses
the trials (its TPE sampler) and stops losing ones early (its median pruner, fed each
evaluation as the run writes it, from the second half of a run on: distilled and plain
curves cross late); the study lives in a SQLite file, so an interrupted search continues
where it stopped. Every trial uses the same seed, so trials differ by their recipe only.
The student alone is trained once on the same split, as the yardstick.

One seed scored on a small held-out split ranks close recipes by luck, and the best of
many such draws is the luckiest: the finalists' scores on the seed they were chosen on are
inflated by the choice. So the best few finalists, and the incumbent (the user's recipe,
or else the shipped one: the first trial), are trained again with fresh seeds (the
confirmation seeds, seed + 1 on), each seed on its own fold: another part of the training
list held out, so that a few images which happen to favour one recipe decide less. Only
those runs decide: the incumbent stays the pick unless a finalist beats it on every
confirmation seed; among those, the best mean over them wins. The student alone trains on
each fold too, as the yardstick there.

Optuna is an optional dependency of this tool (requirements-tune.txt).
"""

import os
import shlex
from dataclasses import dataclass

from paddleseg_ext.components import dataset_task
from paddleseg_ext.config import load_config
from paddleseg_ext.evaluation.task import TASKS
from slim.benchmark.runs import RunDiverged, say
from slim.benchmark.tune_inputs import TuneError, carve_split, check_same_search, search_inputs
from slim.benchmark.tune_report import plot_trials, trial_record, write_tables
from slim.benchmark.tune_runs import SplitRuns, chosen_coef, teacher_flags, write_yaml
from slim.distill import losses
from slim.distill.calibration import GRADIENT_RATIO

# The recipes searched: distill_loss type -> the name of its temperature argument.
RECIPES = {'ChannelWiseDistillLoss': 'tau', 'KLDivergenceLoss': 'temperature', 'DISTLoss': 'tau'}
TEMPERATURES = (1.0, 2.0, 4.0)


def _start(loss, temperature):
    return {'loss': loss, 'temperature': temperature, 'auto_ratio': GRADIENT_RATIO}


# The first trials, per task: the shipped recipes' losses at their temperatures, with coef
# auto at its default pull; the first is the incumbent. Segmentation's are those of
# configs/cpu/r18_to_mobileseg_mv3large_*, classification's start from the digits' KL T=4.
SHIPPED_STARTS = {
    'segmentation': (
        _start('ChannelWiseDistillLoss', 4.0),
        _start('KLDivergenceLoss', 4.0),
        _start('DISTLoss', 1.0),
    ),
    'classification': (
        _start('KLDivergenceLoss', 4.0),
        _start('DISTLoss', 1.0),
        _start('KLDivergenceLoss', 1.0),
    ),
}
FINALISTS = 3
CONFIRM_SEEDS = 2
# The pulls searched (log-uniform), around the default: docs/recipes.md measures 0.25-1.
AUTO_RATIO_RANGE = (0.1, 2.0)


@dataclass
class OwnRecipe:
    """The student config's own distill terms, trained on the split beside the trials: it
    answers to `pick` as a trial does (number, value)."""

    value: float = None
    number: str = 'yours'


def has_own_recipe(config):
    """Whether a loaded student config declares distill terms of its own (a malformed
    distill_loss counts: its run then fails with distill_train.py's own message)."""
    logit_terms = config.dic.get('distill_loss')
    if isinstance(logit_terms, dict):
        logit_terms = logit_terms.get('types')
    return bool(logit_terms or config.dic.get('distill_features'))


def searched_losses(task_name):
    """The RECIPES a task's logits can be compared by: a loss over spatial maps (its class
    sets `needs_spatial`, as CWD) has nothing to compare in a classifier's [N, C]."""
    return sorted(
        name
        for name in RECIPES
        if task_name != 'classification'
        or not getattr(getattr(losses, name), 'needs_spatial', False)
    )


def recipe_config(student_config, loss_type, temperature, auto_ratio):
    """The student config with this distill_loss (coef auto at this pull) and no
    distill_features."""
    return {
        '_base_': os.path.abspath(student_config),
        'distill_loss': {
            'types': [{'type': loss_type, RECIPES[loss_type]: temperature}],
            'coef': ['auto'],
        },
        'distill_auto_ratio': auto_ratio,
        'distill_features': None,
    }


def trial_recipe(student_config, params):
    """The recipe_config of a trial's parameters (loss, temperature, auto_ratio)."""
    return recipe_config(
        student_config, params['loss'], params['temperature'], params['auto_ratio']
    )


def tune(
    teacher_config,
    teacher_weights,
    student_config,
    out_dir,
    trials,
    timeout_s,
    iters,
    seed=0,
    evaluations_per_run=4,
    cpu_threads=None,
    allow_weak_teacher=False,
    finalists=FINALISTS,
    confirm_seeds=CONFIRM_SEEDS,
):
    """Searches loss x pull (distill_auto_ratio) x temperature, then trains the best
    `finalists` and the incumbent (the student config's own recipe, or else the shipped
    one) again with `confirm_seeds` fresh seeds and picks on those (`pick`); writes
    out_dir/{best_student.yml, trials.md, trials.json, trials.png}; returns the pick's
    record. A trial whose loss turns NaN is recorded as diverged and loses; any other
    failure stops the search (RuntimeError naming its log)."""
    if finalists < 0:
        raise TuneError(f'--finalists {finalists}: give 0 (pick on one seed) or more')
    if confirm_seeds < 1:
        raise TuneError(
            f'--confirm_seeds {confirm_seeds}: give 1 or more (--finalists 0 picks on one seed)'
        )
    try:
        import optuna
    except ImportError:
        raise TuneError(
            'tools/tune.py needs Optuna: pip install -r requirements-tune.txt'
        ) from None

    student = load_config(student_config)
    task = TASKS[dataset_task(student.train_dataset_cfg)]
    iters = iters or student.iters
    if not os.path.isfile(teacher_weights):
        raise TuneError(f'--teacher_weights {teacher_weights}: no such file')
    check_same_search(
        out_dir,
        search_inputs(teacher_config, teacher_weights, student_config, iters, seed),
        {
            'teacher_config': teacher_config,
            'teacher_weights': teacher_weights,
            'student_config': student_config,
            'iters': f'--iters {iters}',
            'seed': f'--seed {seed}',
        },
    )
    split, train_count, holdout_count = carve_split(student_config, out_dir, seed=seed)
    say(
        f'Split of {student_config}: {train_count} images to train on, {holdout_count} held '
        f'out to score each trial (val is not read)'
    )
    teacher = teacher_flags(teacher_config, teacher_weights, allow_weak_teacher)
    runs = SplitRuns(
        out_dir, split, student_config, teacher, task, iters, evaluations_per_run, cpu_threads
    )

    def own_score(split_runs, run_seed):
        """The user's recipe's best held-out score with this seed (None: it diverged)."""
        name = 'yours' if run_seed == seed else f'yours_seed{run_seed}'
        if not split_runs.finished(name):
            say(f"Training your student config's own recipe on the split, seed {run_seed}")
        return split_runs.whole_run_score(split_runs.config('yours'), run_seed, name, 'Your recipe')

    def fold_runs(run_seed):
        """The runs of a confirmation seed, in out_dir/fold_K: another fold of the training
        list held out, so the pick is judged on images the search did not score on."""
        fold = run_seed - seed
        fold_dir = os.path.join(out_dir, f'fold_{fold}')
        fold_split, _, _ = carve_split(student_config, fold_dir, seed=seed, fold=fold)
        return runs.on_split(fold_dir, fold_split)

    def confirm_score(split_runs, finalist, run_seed):
        """A finalist's (or your recipe's) best held-out score with a confirmation seed."""
        if isinstance(finalist, OwnRecipe):
            return own_score(split_runs, run_seed)
        name = f'trial_{finalist.number}'
        config = split_runs.config(name, trial_recipe(student_config, finalist.params))
        return split_runs.whole_run_score(config, run_seed, f'{name}_seed{run_seed}', name)

    alone_score, seconds = runs.alone(seed, 'student_alone')
    if seconds is not None:
        warn_if_trials_are_long(seconds, iters, trials, timeout_s)
    own = None
    if has_own_recipe(student):
        own = OwnRecipe()
        own.value = own_score(runs, seed)

    def objective(trial):
        loss_type = trial.suggest_categorical('loss', searched_losses(task.name))
        temperature = trial.suggest_categorical('temperature', TEMPERATURES)
        auto_ratio = trial.suggest_float('auto_ratio', *AUTO_RATIO_RANGE, log=True)
        name = f'trial_{trial.number}'
        config = runs.config(
            name, recipe_config(student_config, loss_type, temperature, auto_ratio)
        )
        label = f'{name}: {loss_type} {RECIPES[loss_type]} {temperature} pull {auto_ratio:.3g}'

        def report(iteration, score):
            trial.report(score, iteration)
            return trial.should_prune()

        try:
            curve, pruned, seconds = runs.distill(config, seed, name, report)
        except RunDiverged as exc:
            # A recipe that blows up loses; the search goes on (any other failure, such as
            # the teacher check, would fail every trial, so it stops the search).
            say(f'{label}: {exc}')
            trial.set_user_attr('diverged', True)
            raise optuna.TrialPruned() from None
        trial.set_user_attr('seconds', seconds)
        trial.set_user_attr('config', config)
        coef = chosen_coef(runs.run_dir(name))
        trial.set_user_attr('coef', coef)
        say(
            f'{label} (coef auto {"-" if coef is None else f"{coef:.3g}"}): '
            + (
                f'pruned at iter {curve[-1][0]}'
                if pruned
                else f'held-out {task.primary_label} {max(s for _, s in curve):.4f}'
            )
            + f' ({seconds:.0f} s)'
        )
        if pruned:
            raise optuna.TrialPruned()
        return max(score for _, score in curve)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name='distill_recipe',
        direction='maximize',
        load_if_exists=True,
        storage=f'sqlite:///{os.path.abspath(os.path.join(out_dir, "study.db"))}',
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=iters // 2),
    )
    if not study.trials:
        for params in SHIPPED_STARTS[task.name][:trials]:
            study.enqueue_trial(params)
    # A failing trial (e.g. its teacher check) stops the search, a diverging one does not.
    # Run again on the same --out, the search only adds the trials it still owes.
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    owed = max(trials - len(study.get_trials(deepcopy=False, states=done)), 0)
    study.optimize(objective, n_trials=owed, timeout=timeout_s)
    completed = [
        t
        for t in study.trials
        if t.state == optuna.trial.TrialState.COMPLETE and 'config' in t.user_attrs
    ]
    if not completed:
        raise TuneError('no trial finished: raise --trials or --timeout')
    ranked = sorted(completed, key=lambda t: t.value, reverse=True)[: max(finalists, 1)]
    # The incumbent (the user's recipe, or else the shipped one: trial 0) trains again too,
    # and stays the pick unless a finalist beats it on every confirmation seed.
    if own is not None:
        incumbent = own if own.value is not None else None
    else:
        incumbent = next((t for t in completed if t.number == 0), None)
    if incumbent is not None and incumbent not in ranked:
        ranked.append(incumbent)
    confirm, alone_confirm = {}, []
    seeds = list(range(seed + 1, seed + 1 + confirm_seeds)) if finalists > 0 else []
    if seeds:
        names = ['your recipe' if t is own else f'trial {t.number}' for t in ranked]
        say(
            f'The finalists, scored again with seeds {", ".join(map(str, seeds))}, each on '
            f'another held-out fold: {", ".join(names)}'
        )
        for s in seeds:
            split_runs = fold_runs(s)
            alone_confirm.append(split_runs.alone(s, f'student_alone_seed{s}')[0])
            for t in ranked:
                confirm.setdefault(t.number, []).append(confirm_score(split_runs, t, s))

    best = pick(ranked, incumbent, confirm)
    if isinstance(best, OwnRecipe):
        best_config = write_yaml(
            os.path.join(out_dir, 'best_student.yml'), {'_base_': os.path.abspath(student_config)}
        )
        label = f"your student config's own recipe ({student_config})"
    else:
        params = best.params
        best_config = write_yaml(
            os.path.join(out_dir, 'best_student.yml'), trial_recipe(student_config, params)
        )
        label = (
            f'trial {best.number}, {params["loss"]} {RECIPES[params["loss"]]} '
            f'{params["temperature"]} pull {params["auto_ratio"]:.3g} (coef auto)'
        )
    records = [trial_record(t, optuna, confirm.get(t.number)) for t in study.trials]
    yours = None if own is None else {'score': own.value, 'confirm_scores': confirm.get('yours')}
    write_tables(out_dir, records, alone_score, seed, seeds, alone_confirm, task, yours)
    plot_trials(os.path.join(out_dir, 'trials.png'), records, alone_score, task.primary_label, own)
    if seeds:
        score, alone_mean = confirm_mean(confirm[best.number]), sum(alone_confirm) / len(seeds)
        where = f'mean of seeds {", ".join(map(str, seeds))}, which it was not chosen on'
    else:
        score, alone_mean, where = best.value, alone_score, f'seed {seed}'
    say(
        f'Pick: {label}: held-out {task.primary_label} {score:.4f} ({where}; the student '
        f'alone {alone_mean:.4f}) -> {best_config}'
    )
    if score <= alone_mean:
        say(
            f'Warning: the pick does not beat the student alone on the held-out images '
            f'({score:.4f} against {alone_mean:.4f}): distillation may not help this pair as '
            f'it is; check that the teacher suits this data, or train the student alone'
        )
    command = ['python', 'distill_train.py', *teacher, '--student_config', best_config]
    command += ['--do_eval', '--save_dir', os.path.join(out_dir, 'distilled')]
    say(f'Next, train it and judge it on val: {shlex.join(command)}')
    return {'config': best_config, 'score': score, 'alone': alone_mean}


def warn_if_trials_are_long(alone_seconds, iters, trials, timeout_s):
    """Says so when fewer than half the trials asked for can start within timeout_s: a
    student config's full schedule is too long a trial (a distilled run takes longer
    still than the student alone's `alone_seconds`)."""
    if timeout_s is None or alone_seconds <= 0:
        return
    fit = int(timeout_s // alone_seconds)
    if fit < trials / 2:
        say(
            f'Warning: the student alone took {alone_seconds:.0f} s for {iters} iterations, '
            f'so at most about {max(fit, 1)} of the {trials} trials can start within --timeout '
            f'{timeout_s:.0f} s: give a smaller --iters for short trials, or a larger --timeout'
        )


def confirm_mean(scores):
    """The mean over the confirmation seeds; a diverged run (None) scores 0."""
    return sum(0.0 if s is None else s for s in scores) / len(scores)


def pick(finalists, incumbent, confirm):
    """The incumbent (the user's recipe, or the shipped recipe's trial), unless finalists
    beat it on every confirmation seed ({trial number: [score per seed]}; None: diverged,
    which loses): then the best confirmation mean of those. The seed the finalists were
    chosen on plays no part. Without confirmation scores, the best search score; without
    an incumbent, the best confirmation mean."""
    if not confirm:
        return max(finalists, key=lambda t: t.value)
    if incumbent is None:
        return max(finalists, key=lambda t: confirm_mean(confirm[t.number]))

    def beats(score, incumbent_score):
        return score is not None and (incumbent_score is None or score > incumbent_score)

    challengers = [
        t for t in finalists if all(map(beats, confirm[t.number], confirm[incumbent.number]))
    ]
    if not challengers:
        return incumbent
    return max(challengers, key=lambda t: confirm_mean(confirm[t.number]))
