"""Train a small JAX model on MNIST-format files, fed by a dataflow pipeline.

The script writes a small synthetic data set in the MNIST file format (see
``_mnist_files.py``), reads it with ``dataflow.dataset.Mnist``, augments and
batches it in two worker processes, and trains a two-layer network with
plain ``jax.grad`` and SGD on batches that ``dataflow.to_jax`` places on the
device ahead of time. Then it checks the accuracy on the test files.

The pipeline's workers start before JAX does: forking a process after JAX
has started its threads is unsafe (JAX warns). With a pipeline that must
start later, give its runners ``start_method="forkserver"``.

Run: python examples/train_jax_mnist.py        (needs: pip install 'dataflow-ml[jax]')
"""

import os
import tempfile

import numpy as np
from _mnist_files import write_fake_mnist  # examples/_mnist_files.py

import dataflow as D

QUICK = os.environ.get("DATAFLOW_EXAMPLE_QUICK") == "1"  # set by the test suite
NUM_TRAIN, NUM_TEST = (2_000, 500) if QUICK else (20_000, 2_000)
EPOCHS = 3
BATCH_SIZE = 64
LEARNING_RATE = 0.1


def augment(dp):
    image, label = dp
    shift = np.random.randint(-2, 3)  # a small horizontal shift; each worker has its own seed
    return [np.roll(image, shift, axis=1).reshape(-1), label]


def main():
    with tempfile.TemporaryDirectory() as directory:
        write_fake_mnist(directory, NUM_TRAIN, NUM_TEST)
        train = D.MultiProcessMapAndBatchDataZMQ(
            D.dataset.Mnist("train", dir=directory, shuffle=True, seed=0),
            num_proc=2,
            map_func=augment,
            batch_size=BATCH_SIZE,
            seed=1,
            strict=True,
        )
        batches = D.to_jax(train, prefetch=2)  # resets the pipeline: its workers start here
        test = D.BatchData(D.dataset.Mnist("test", dir=directory, shuffle=False), 250)
        test_batches = D.to_jax(D.MapDataComponent(test, lambda x: x.reshape(len(x), -1), 0))

        import jax  # JAX starts here, after the workers
        import jax.numpy as jnp

        def predict(params, x):
            hidden = jax.nn.relu(x @ params["w1"] + params["b1"])
            return hidden @ params["w2"] + params["b2"]

        def loss(params, x, y):
            logits = predict(params, x)
            return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(y)), y])

        @jax.jit
        def step(params, x, y):
            value, grads = jax.value_and_grad(loss)(params, x, y)
            return jax.tree_util.tree_map(lambda p, g: p - LEARNING_RATE * g, params, grads), value

        k1, k2 = jax.random.split(jax.random.PRNGKey(0))
        params = {
            "w1": jax.random.normal(k1, (784, 64)) * 0.05,
            "b1": jnp.zeros(64),
            "w2": jax.random.normal(k2, (64, 10)) * 0.05,
            "b2": jnp.zeros(10),
        }
        for epoch in range(EPOCHS):
            losses = []
            for images, labels in batches:  # each for loop is one pass
                params, value = step(params, images, labels)
                losses.append(float(value))
            print(f"epoch {epoch}: {len(losses)} batches, mean loss {np.mean(losses):.3f}")
        batches.close()
        train.close()

        correct = total = 0
        for images, labels in test_batches:
            correct += int((predict(params, images).argmax(1) == labels).sum())
            total += len(labels)
        test_batches.close()
    accuracy = correct / total
    print(f"test accuracy {accuracy:.3f} on {total} images")
    if accuracy < 0.9:
        raise SystemExit(f"the model did not learn: accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
