"""Train a small PyTorch model on MNIST-format files, fed by a dataflow pipeline.

The script writes a small synthetic data set in the MNIST file format (the
four gzipped IDX files, see ``_mnist_files.py``), reads it with
``dataflow.dataset.Mnist``, augments and batches it in two worker
processes, and trains a small convolutional network through
``dataflow.to_torch`` and a plain ``DataLoader(batch_size=None,
num_workers=0)``: the pipeline's mapper does the parallel work. Halfway
through the first epoch it saves the pipeline's position with the model, as
a training job would; at the end it loads that position into a new pipeline
and checks that the pass goes on from there. Then it checks the accuracy on
the test files.

Run: python examples/train_torch_mnist.py        (needs: pip install 'dataflow-ml[torch]')
"""

import os
import tempfile

import numpy as np
import torch
from _mnist_files import write_fake_mnist  # examples/_mnist_files.py
from torch import nn

import dataflow as D

QUICK = os.environ.get("DATAFLOW_EXAMPLE_QUICK") == "1"  # set by the test suite
NUM_TRAIN, NUM_TEST = (2_000, 500) if QUICK else (20_000, 2_000)
EPOCHS = 2 if QUICK else 3
BATCH_SIZE = 64


def augment(dp):
    image, label = dp
    shift = np.random.randint(-2, 3)  # a small horizontal shift; each worker has its own seed
    return [np.roll(image, shift, axis=1)[None], label]  # (1, 28, 28): channels first


def train_pipeline(directory):
    df = D.dataset.Mnist("train", dir=directory, shuffle=True, seed=0)
    return D.MultiProcessMapAndBatchDataZMQ(
        df, num_proc=2, map_func=augment, batch_size=BATCH_SIZE, seed=1, strict=True
    )


def model():
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 14 * 14, 10),
    )


def main():
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as directory:
        write_fake_mnist(directory, NUM_TRAIN, NUM_TEST)
        pipeline = train_pipeline(directory)
        dataset = D.to_torch(pipeline)  # resets the pipeline itself
        loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=0)
        net = model()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        checkpoint = None
        for epoch in range(EPOCHS):
            losses = []
            for step, (images, labels) in enumerate(loader):
                # images: float32 (64, 1, 28, 28); labels: int64, as cross_entropy wants
                loss = nn.functional.cross_entropy(net(images), labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
                if epoch == 0 and step == len(dataset) // 2:
                    # A mid-epoch checkpoint: the model and the pipeline's position.
                    checkpoint = {"model": net.state_dict(), "data": dataset.state_dict()}
            print(f"epoch {epoch}: {len(losses)} batches, mean loss {np.mean(losses):.3f}")
        pipeline.close()

        # A restarted job builds the pipeline again and loads the position: the pass
        # goes on with the batches after the checkpoint, each input once.
        resumed = train_pipeline(directory)
        dataset = D.to_torch(resumed)
        dataset.load_state_dict(checkpoint["data"])
        rest = sum(1 for _ in dataset)
        resumed.close()
        received = checkpoint["data"]["count"]  # batches of that epoch before the checkpoint
        print(f"resumed after batch {received} of epoch 0: {rest} batches left in it")
        assert received + rest == len(dataset), (received, rest)

        test = D.BatchData(D.dataset.Mnist("test", dir=directory, shuffle=False), 250)
        correct = total = 0
        with torch.no_grad():
            for images, labels in D.to_torch(test):
                predicted = net(images[:, None]).argmax(1)
                correct += int((predicted == labels).sum())
                total += len(labels)
    accuracy = correct / total
    print(f"test accuracy {accuracy:.3f} on {total} images")
    if accuracy < 0.9:
        raise SystemExit(f"the model did not learn: accuracy {accuracy:.3f}")


if __name__ == "__main__":
    main()
