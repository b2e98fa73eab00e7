"""A goal-conditioned actor on a trained LeWM's frozen latents (issue 47): it maps the
current embedding, the previous one and the goal's to the next action block, so acting costs
one encoder call and one small network per decision instead of a search through the world
model. `config` holds its settings, `net` the network, `hindsight` its training pairs, `train`
the loop that writes it into a run (`lewm train-actor RUN`); `lewm.planning.actor` plans
with it."""
