"""Language-model fine-tuning with GBPO (group-relative BPO, digest section 5) and GRPO.

One concept per module:

* :mod:`~bpo_jax.llm.groups`: per-prompt group statistics, GRPO advantages, GBPO target logits.
* :mod:`~bpo_jax.llm.losses`: token-level GBPO / GRPO losses, KL to a reference, aggregation.
* :mod:`~bpo_jax.llm.rewards`: the verifiable-reward interface and test-time RL (TTRL) voting.
* :mod:`~bpo_jax.llm.sampling`: the model contract and batched KV-cache generation.
* :mod:`~bpo_jax.llm.model`: a small decoder-only transformer implementing that contract.
* :mod:`~bpo_jax.llm.task`: a synthetic addition task with checkable answers.
* :mod:`~bpo_jax.llm.trainer`: supervised warm start, then the RL loop; CSV and PNG curves.
* :mod:`~bpo_jax.llm.cli`: ``bpo-jax llm``.
* :mod:`~bpo_jax.llm.tunix`: optional adapter registering GBPO in google-tunix (imported only on request).

Importing this package imports nothing beyond the core dependencies.
"""
