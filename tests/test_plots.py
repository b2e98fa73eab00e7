from lewm import plots


def test_the_eval_figure_counts_successes_when_the_budget_is_the_goal_sets(tmp_path,
                                                                           monkeypatch):
    # `--budget 0` asks for the goal set's budget: the histogram's bins come from the budget
    # actually used (eval.json's "budget"), not from the 0 asked for.
    figures = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, out, dpi: (figures.append(fig),
                                                                save(fig, out, dpi)))
    episodes = [{"success": True, "success_step": s} for s in (5, 12, 30)]
    episodes.append({"success": False, "success_step": None})
    result = {"success_rate": 0.75, "random_success_rate": 0.25, "solved_at_start": 0.0,
              "success_ci95": [0.3, 0.95], "world": "tworoom", "episodes_evaluated": 4,
              "plan_ms_mean": 10.0, "budget": 50, "episodes": episodes,
              "config": {"eval": {"budget": 0}}}
    plots.plot_eval(result, tmp_path / "eval.png")
    bars = figures[0].axes[1].patches
    assert sum(b.get_height() for b in bars) == 3
    assert (tmp_path / "eval.png").stat().st_size > 0
