"""A short CPU run: the supervised warm start reaches partial accuracy, then GBPO with
verifiable rewards raises it; the run writes its curves; the command line fails in one line."""
import csv
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bpo_jax.llm import rewards, task, trainer
from bpo_jax.llm.sampling import token_log_probs

# Measured 2026-12-01 on the 2-core CPU with this exact configuration (1-layer model, 32
# evaluation problems, 15 RL steps, lr 1e-4): accuracy before -> after was 0.25 -> 0.59
# (seed 0), 0.19 -> 0.34 (seed 1), 0.19 -> 0.44 (seed 2); the 2-layer model gained
# +0.09..+0.28 over four seeds; seed 0 again 0.25 -> 0.59 on 2026-12-06.  The test asks for
# +0.2 (7 of 32 problems) on seed 0: with GBPO's target logits zeroed (no learning signal) the
# same run still drifted +0.06, so a bar of a few problems could not tell learning from drift.
MIN_GAIN = 0.2
CFG = trainer.LLMConfig(seed=0, algo="gbpo", num_layers=1, num_eval=32, num_train=2048, rl_steps=15,
                        eval_every=15, lr=1e-4, fast_compile=True)


def test_rl_raises_accuracy_after_warm_start(tmp_path):
    problems = trainer.make_problem_sets(CFG)
    params, warm = trainer.warm_start(CFG, problems)
    assert CFG.warm_target <= warm["dev_accuracy"] <= 0.5 and warm["steps"] < CFG.warm_max_steps
    _, hist = trainer.rl_train(CFG, params, problems)
    before, after = hist[0]["accuracy"], hist[-1]["accuracy"]
    assert 0.05 <= before <= 0.4, before
    assert after >= before + MIN_GAIN, (before, after)
    # Ratio statistics are recorded per step; multi-epoch updates move some tokens' ratios.
    assert all(0.0 <= h["ratio_out_frac_final"] <= 1.0 for h in hist[1:])
    assert any(h["ratio_out_frac_final"] > 0 for h in hist[1:])
    path = tmp_path / "curve.csv"
    trainer.write_csv(str(path), hist)
    rows = list(csv.DictReader(open(path)))
    assert len(rows) == CFG.rl_steps + 1 and float(rows[-1]["accuracy"]) == pytest.approx(after)
    trainer.plot(str(tmp_path / "curves.png"), {"seed 0": hist})
    assert os.path.getsize(tmp_path / "curves.png") > 1000


@pytest.mark.parametrize("ttrl", [False, True])
def test_each_rl_step_groups_a_prompts_responses_and_keeps_the_start_as_kl_reference(monkeypatch, ttrl):
    """What each RL step hands the update: group statistics over the responses of one prompt
    (verifiable rewards: its G samples; TTRL: the first M of its N votes), one group per prompt;
    and reference log-probs of the policy the RL phase started from (the KL penalty's anchor),
    not of the policy that sampled the batch.  TTRL, P = 8 prompts out of 8 evaluation problems:
    each drawn once, and the step's label_accuracy is the fraction of prompts whose majority
    vote over all N parsed answers is a + b, recomputed here from the sampled tokens.  The last
    step is evaluated though eval_every does not divide rl_steps; a step's kl, entropy and pg_loss
    are its update's last epoch (where the policy ended up)."""
    per_prompt = dict(ttrl_votes=6, ttrl_train=4) if ttrl else dict(group_size=4)
    cfg = trainer.LLMConfig(seed=0, d_model=16, num_layers=1, num_eval=8, num_train=64, rl_steps=2, eval_every=5,
                            prompts_per_step=8, ttrl=ttrl, lr=1e-2, fast_compile=True, **per_prompt)
    seen, real = [], trainer.make_rl_functions

    def spy(cfg, model, mesh):
        sample, score, advantages, update, *rest = real(cfg, model, mesh)

        def recorded_sample(params, prompts, key):
            out = sample(params, prompts, key)
            seen.append({"sampled_prompts": np.asarray(prompts), "sampled_tokens": np.asarray(jax.device_get(out[0]))})
            return out

        def recorded_advantages(r, group_ids):
            seen[-1]["group_ids"] = np.asarray(group_ids)
            return advantages(r, group_ids)

        def recorded_update(params, opt_state, batch, key):
            out = update(params, opt_state, batch, key)
            seen[-1].update(jax.device_get({**{k: batch[k] for k in ("prompts", "tokens", "old_logp", "ref_logp")},
                                            "metrics": out[2]}))
            return out

        return (recorded_sample, score, recorded_advantages, recorded_update, *rest)

    monkeypatch.setattr(trainer, "make_rl_functions", spy)
    model, init = trainer.make_model(cfg.model_config)
    start = init(jax.random.key(0))
    problems = trainer.make_problem_sets(cfg)
    _, hist = trainer.rl_train(cfg, start, problems)
    assert len(seen) == cfg.rl_steps and "accuracy" in hist[0] and "accuracy" in hist[-1]
    for step, row in zip(seen, hist[1:]):
        groups = np.unique(step["group_ids"])
        firsts = set()
        for g in groups:
            rows = step["prompts"][step["group_ids"] == g]
            assert (rows == rows[0]).all(), "a group mixes the responses of several prompts"
            firsts.add(tuple(rows[0]))
        assert len(firsts) == len(groups) == cfg.prompts_per_step  # one group per prompt
        reference = token_log_probs(model, start, jnp.asarray(step["prompts"]), jnp.asarray(step["tokens"]),
                                    cfg.temperature)[0]
        np.testing.assert_allclose(step["ref_logp"], reference, atol=1e-5)
        for name in ("kl", "entropy", "pg_loss"):  # the history describes the update's last epoch, as written
            assert row[name] == pytest.approx(float(np.mean(step["metrics"][name][-1])), rel=1e-6)
        if ttrl:
            p, n, m = cfg.prompts_per_step, cfg.ttrl_votes, cfg.ttrl_train
            prompts, tokens = step["sampled_prompts"], step["sampled_tokens"]
            assert prompts.shape[0] == tokens.shape[0] == p * n
            assert sorted(map(tuple, prompts[::n])) == sorted(map(tuple, problems.eval_prompts))
            keep = np.concatenate([np.arange(i * n, i * n + m) for i in range(p)])
            np.testing.assert_array_equal(step["prompts"], prompts[keep])
            np.testing.assert_array_equal(step["tokens"], tokens[keep])
            labels = [rewards.majority_vote([task.extract_answer(t) for t in tokens[i * n:(i + 1) * n]])
                      for i in range(p)]
            truth = [task.true_answer(x) for x in prompts[::n]]
            assert row["label_accuracy"] == np.mean([l == t for l, t in zip(labels, truth)])
    assert np.abs(seen[-1]["old_logp"] - seen[-1]["ref_logp"]).max() > 1e-3  # the sampling policy had moved


@pytest.mark.parametrize("argv,message", [
    (["llm", "--algo", "ppo"], "invalid choice"),
    (["llm", "--epochs", "0"], "--epochs must be >= 1"),
    (["llm", "--clip", "1.5"], "clip"),
    (["llm", "--ttrl", "--ttrl-votes", "4", "--ttrl-train", "8"], "--ttrl-train"),
    (["llm", "--seeds", "0"], "--seeds must be >= 1"),
])
def test_cli_rejects_bad_input_in_one_line(argv, message, capsys):
    from bpo_jax import cli

    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("precision", ["highest", "default"])
def test_programs_trace_at_the_configured_matmul_precision(precision):
    """Every LLM program goes through LLMConfig.jit, which traces at the run's precision."""
    x = jnp.ones((4, 8))
    text = trainer.LLMConfig(matmul_precision=precision).jit(lambda a: a @ a.T).lower(x).as_text()
    assert f"precision = [{precision.upper()}, {precision.upper()}]" in text
    with pytest.raises(ValueError, match="unknown `matmul_precision` 'tf32'"):
        trainer.LLMConfig(matmul_precision="tf32").validate()
    # The greedy evaluation too (it traced at "highest" whatever the run's setting: the accuracies
    # and the warm start's stopping check).
    cfg = trainer.LLMConfig(matmul_precision=precision, d_model=16, num_layers=1)
    params = trainer.make_model(cfg.model_config)[1](jax.random.key(0))
    prompts = jnp.zeros((2, 6), jnp.int32)
    generator = trainer.greedy_generator(cfg.model_config, cfg.fast_compile, precision)
    assert f"precision = [{precision.upper()}, {precision.upper()}]" in generator.lower(params, prompts).as_text()
    trainer.greedy_generator.cache_clear()
    trainer.greedy_accuracy(cfg, params, np.zeros((2, 6), np.int32))
    trainer.greedy_generator(cfg.model_config, cfg.fast_compile, precision)  # the one it used: a cache hit
    assert trainer.greedy_generator.cache_info()[:2] == (1, 1)  # (hits, misses)


def test_every_seed_and_phase_draws_its_prompts_from_its_own_stream():
    """Seed S's RL prompts came from default_rng(S + 1), the stream of seed S + 1's warm start."""
    draws = {(s, phase): tuple(trainer.prompt_stream(s, phase).bit_generator.random_raw(4))
             for s in range(4) for phase in ("warm", "rl")}
    assert len(set(draws.values())) == len(draws)
    assert draws[(0, "rl")] == tuple(trainer.prompt_stream(0, "rl").bit_generator.random_raw(4))  # reproducible
