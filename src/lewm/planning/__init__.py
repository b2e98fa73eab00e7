"""Acting towards goals in latent space: planners behind one interface (`base.Planner`),
registered by name (`registry`), configured by one typed `config.PlanConfig`, driven by the
MPC loop (`mpc.run_mpc`)."""
