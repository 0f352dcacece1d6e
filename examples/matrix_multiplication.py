"""Matrix multiplication with the Neural Engineering Framework.

Two 2x2 matrices A and B are represented by ensemble arrays; every product
A[i, k] * B[k, j] is computed by a 2-D ensemble (nengo.networks.Product), and the
products are summed into C = A @ B. Run it with:

    spike run examples/matrix_multiplication.py --workers 2 --time 1.0 --plot mm.png
"""

import nengo
import numpy as np

A_VALUES = np.array([[0.5, -0.5], [0.25, 0.75]])
B_VALUES = np.array([[0.6, 0.3], [-0.4, 0.8]])
RADIUS = 1.0

with nengo.Network(label="matrix multiplication", seed=3) as model:
    rows_a, cols_a = A_VALUES.shape
    rows_b, cols_b = B_VALUES.shape
    assert cols_a == rows_b

    input_a = nengo.Node(A_VALUES.ravel(), label="input A")
    input_b = nengo.Node(B_VALUES.ravel(), label="input B")
    a = nengo.networks.EnsembleArray(50, n_ensembles=A_VALUES.size, radius=RADIUS, label="A")
    b = nengo.networks.EnsembleArray(50, n_ensembles=B_VALUES.size, radius=RADIUS, label="B")
    nengo.Connection(input_a, a.input)
    nengo.Connection(input_b, b.input)

    # one product per (i, k, j): C[i, j] = sum_k A[i, k] * B[k, j]
    n_products = rows_a * cols_a * cols_b
    product = nengo.networks.Product(100, dimensions=n_products, label="products")
    transform_a = np.zeros((n_products, A_VALUES.size))
    transform_b = np.zeros((n_products, B_VALUES.size))
    transform_c = np.zeros((rows_a * cols_b, n_products))
    index = 0
    for i in range(rows_a):
        for j in range(cols_b):
            for k in range(cols_a):
                transform_a[index, i * cols_a + k] = 1
                transform_b[index, k * cols_b + j] = 1
                transform_c[i * cols_b + j, index] = 1
                index += 1
    nengo.Connection(a.output, product.input_a, transform=transform_a)
    nengo.Connection(b.output, product.input_b, transform=transform_b)

    c = nengo.networks.EnsembleArray(50, n_ensembles=rows_a * cols_b, radius=RADIUS, label="C")
    nengo.Connection(product.output, c.input, transform=transform_c)

    probe_a = nengo.Probe(a.output, synapse=0.01, label="A")
    probe_b = nengo.Probe(b.output, synapse=0.01, label="B")
    probe_c = nengo.Probe(c.output, synapse=0.01, label="C")

EXPECTED = (A_VALUES @ B_VALUES).ravel()

if __name__ == "__main__":
    import spike

    with spike.Simulator(model, workers=2) as sim:
        sim.run(1.0)
    print("C (decoded, last 100 ms):", sim.data[probe_c][-100:].mean(axis=0).round(2))
    print("C (exact):               ", EXPECTED.round(2))
