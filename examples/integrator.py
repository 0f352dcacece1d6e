"""A neural integrator: a recurrently connected ensemble holds the integral of its input.

The recurrent connection has a synapse (tau = 0.1 s), as every neural integrator does.
The input is a piecewise-constant process, which runs on a worker like any ensemble.

    spike run examples/integrator.py --workers 2 --time 2.0 --plot integrator.png
"""

import nengo

TAU = 0.1

with nengo.Network(label="integrator", seed=2) as model:
    stimulus = nengo.Node(
        nengo.processes.Piecewise({0: 0, 0.2: 1, 1.0: 0, 1.4: -1, 1.6: 0}),
        label="input",
    )
    integrator = nengo.Ensemble(200, dimensions=1, label="integrator")
    nengo.Connection(stimulus, integrator, transform=TAU, synapse=TAU)
    nengo.Connection(integrator, integrator, synapse=TAU)
    input_probe = nengo.Probe(stimulus, label="input")
    integrator_probe = nengo.Probe(integrator, synapse=0.01, label="integral")
