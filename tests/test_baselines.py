"""baselines.py: presets build the grid points of DESIGN.md, MADDPG / MAAC specifics, the matrix game."""

import os

import pytest
import torch

import baselines
import iac

EXPECTED = {  # DESIGN.md section 1: (policy, per-agent critic class, mixer?)
    "ddpg_mix": ("deterministic", iac.IndividualCritic, True),
    "attn_qmix": ("deterministic", iac.AttentionCritic, True),
    "sq": ("joint", iac.IndividualCritic, True),
    "siq": ("independent", iac.IndividualCritic, True),
    "siaq": ("independent", iac.AttentionCritic, True),
    "maddpg": ("deterministic", iac.CentralizedCritic, False),
    "maac": ("independent", baselines.MAACCritic, False),
}


def _build(algo, env="predator_prey"):
    args = baselines.continuous_args(algo, ["--env", env])
    e = iac.make_env(args, 1, "cpu")
    nets, opts = iac.build(args, e, "cpu", baselines.MAACCritic if algo == "maac" else None)
    return args, nets, opts


@pytest.mark.parametrize("algo", list(EXPECTED))
def test_each_preset_builds_its_grid_point(algo):
    policy, q_class, has_mixer = EXPECTED[algo]
    args, nets, opts = _build(algo)
    assert nets["actor"].policy == policy
    assert type(nets["critic"].q) is q_class
    assert isinstance(nets["critic"].mixer, iac.QMixer) if has_mixer else nets["critic"].mixer is None
    assert hasattr(nets["actor"], "f_psi") == (policy == "joint")  # only a joint policy has L = f_psi(s)
    assert ("alpha" in opts) == (policy != "deterministic")
    assert args.exp_name == algo and args.algo == algo


def test_maddpg_critic_sees_every_action_and_takes_others_from_the_buffer():
    args, nets, _ = _build("maddpg")
    assert args.others_actions == "buffer"
    critic = nets["critic"].q
    obs, act = torch.randn(8, 3, 16), torch.rand(8, 3, 2)
    for j in range(3):
        act2 = act.clone()
        act2[:, j] = -act2[:, j]
        assert not torch.allclose(critic(obs, act)[:, 0], critic(obs, act2)[:, 0]), j
    # agent i's policy gradient: only its own action is fresh, the others' come from the batch
    batch = dict(obs=obs, state=torch.randn(8, 20), act=act)
    loss, _ = iac.policy_loss(nets, batch, 0.0, args)
    loss.backward()
    assert nets["actor"].net[0].weight.grad.abs().sum() > 0


def test_maac_query_ignores_own_action_and_regulariser_and_grad_scaling():
    args, nets, _ = _build("maac")
    critic = nets["critic"].q
    torch.manual_seed(0)
    obs, act = torch.randn(8, 3, 16), torch.rand(8, 3, 2)
    critic(obs, act)
    logits = critic._logits.clone()  # (B, H, n, n): row i is agent i's query against the others' keys
    act2 = act.clone()
    act2[:, 0] = -act2[:, 0]  # agent 0's own action changes...
    q2 = critic(obs, act2)
    # ...its query does not (row 0 is query_0 . key_j for j != 0, keys unchanged), others' rows do
    assert torch.allclose(critic._logits[:, :, 0], logits[:, :, 0])
    assert not torch.allclose(critic._logits[:, :, 1], logits[:, :, 1])
    assert not torch.allclose(q2[:, 0], critic(obs, act)[:, 0])  # u_0 still enters Q_0 through f_0
    # the attention-logit regulariser joins the critic loss
    assert critic.aux_loss() > 0
    # shared modules (W_q, W_k, V) get 1/n of the gradient; the per-agent encoders get all of it
    torch.manual_seed(1)
    scaled = baselines.MAACCritic(args, 3, 16, 2)
    torch.manual_seed(1)
    plain = baselines.MAACCritic(args, 3, 16, 2)
    for mod in ("W_q", "W_k", "V"):  # the same critic without the 1/n scaling
        getattr(plain, mod).grad_scale = 1.0
    scaled(obs, act).sum().backward()
    plain(obs, act).sum().backward()
    for mod in ("W_q", "W_k", "V"):
        for a, b in zip(getattr(scaled, mod).parameters(), getattr(plain, mod).parameters()):
            assert torch.allclose(3 * a.grad, b.grad, rtol=1e-5, atol=1e-8), mod
    assert torch.equal(scaled.s_enc[0].weight.grad, plain.s_enc[0].weight.grad)


def test_matrix_game_qmix_misses_the_optimum_and_qmixs_finds_it():
    _, qmix = baselines.matrix_game_report("qmix", seed=1)
    _, qmixs = baselines.matrix_game_report("qmixs", seed=1)
    assert qmix["greedy"] != (0, 0)
    assert qmix["q_tot"][0, 0] < 0 < 8  # (A, A)'s value of 8 is not represented
    assert qmixs["greedy"] == (0, 0)
    assert qmixs["policy"][0, 0] > 0.5
    # QMIX's Q_tot is monotone in each Q_i (Eq. 3): raising Q_1(A) never lowers any Q_tot entry
    agents, mixer, inputs = baselines.train_matrix_game("qmix", seed=2, steps=200)
    q = torch.randn(9, 2, requires_grad=True)
    (g,) = torch.autograd.grad(mixer(q, torch.ones(9, 1)).sum(), q)
    assert (g >= 0).all()


def test_paper_temperature_is_about_three():
    alpha = baselines.paper_temperature()
    assert 2.8 < alpha < 3.2
    # and with it Table 2's Q_tot gives back Table 3 to within its rounding
    p = baselines.boltzmann(baselines.PAPER_TABLE2_QTOT, alpha)
    assert (p - torch.tensor(baselines.PAPER_TABLE3, dtype=torch.float64)).abs().max() < 0.011


SMOKE = ["--total-steps", "80", "--learning-starts", "40", "--batch-size", "16", "--buffer-size", "400",
         "--eval-every", "40", "--eval-episodes", "2", "--hidden", "16", "--no-progress"]


@pytest.mark.parametrize("env", ["simple_world", "multi_pendulum", "predator_prey", "po_predator_prey"])
def test_smoke_every_algo_trains_saves_and_resumes(env, tmp_path):
    """Smoke test: every continuous algo trains on every env, saves, and resumes through baselines.py."""
    for algo in baselines.PRESETS:
        run = baselines.main(["--algo", algo, "--env", env, "--runs-dir", str(tmp_path), "--save-model", *SMOKE])
        ckpt = os.path.join(run, "checkpoint.pt")
        again = baselines.main(["--resume", ckpt, "--total-steps", "120", "--no-progress"])
        assert again == run
        assert torch.load(ckpt, weights_only=False)["step"] == 120
        assert open(os.path.join(run, "eval.csv")).read().split()[-1].startswith("120,")


def test_bad_combinations_are_refused(capsys):
    with pytest.raises(SystemExit, match="sets --policy"):
        baselines.main(["--algo", "maddpg", "--env", "predator_prey", "--policy", "joint"])
    with pytest.raises(SystemExit):
        baselines.main(["--algo", "maac", "--env", "matrix_game"])
    assert "matrix game takes --algo qmix" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        baselines.main(["--algo", "qmix", "--env", "predator_prey"])
    with pytest.raises(SystemExit):
        baselines.main(["--env", "predator_prey"])
    assert "--algo is required" in capsys.readouterr().err


def test_matrix_game_tables_go_to_an_out_file_in_a_new_folder(tmp_path, capsys):
    out = tmp_path / "new" / "tables.md"
    text = baselines.main(["--algo", "qmix", "--out", str(out)])
    assert out.read_text() == text + "\n" and "Q_tot" in text
