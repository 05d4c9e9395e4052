"""Train the bundled audio model: a small keyword classifier (yes / no / left / right /
background) on speech synthesised with espeak-ng, and export it to ONNX with its log-mel
front end inside the graph (input: 1 s of 16 kHz mono waveform, dynamic batch).

Speech is made here (no download) with espeak-ng: several accents and voice variants, speeds
and pitches, placed at a random time in a 1 s window, random gain, with white or pink noise
at a random SNR. Background clips are silence or noise only. One accent/variant set is held
out for the test accuracy.

Needs ``espeak-ng`` on PATH and a Python with torch, onnx, scipy, soundfile::

    /work/rexvenv/bin/python scripts/models/train_audio.py [--out rex_stream/data/models]
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import subprocess
from pathlib import Path

import numpy as np
import soundfile
import torch
from scipy.signal import resample_poly
from torch import nn

RATE = 16000
LENGTH = RATE  # 1 s
WORDS = ("yes", "no", "left", "right")
CLASSES = (*WORDS, "background")
N_FFT, HOP, N_MELS = 400, 160, 40
TRAIN_VOICES = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan")
TEST_VOICES = ("en-029", "en-gb-x-gbcwmd")
TRAIN_VARIANTS = ("", "+m1", "+m3", "+f1", "+f3", "+klatt")
TEST_VARIANTS = ("+m2", "+f2")


def speak(word: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    """espeak-ng's rendering of ``word`` at 16 kHz, trimmed of leading/trailing silence."""
    wav = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", word],
        check=True,
        capture_output=True,
    ).stdout
    samples, rate = soundfile.read(io.BytesIO(wav), dtype="float32")
    samples = resample_poly(samples, RATE, rate).astype(np.float32)
    loud = np.flatnonzero(np.abs(samples) > 0.02 * np.abs(samples).max())
    return samples[loud[0] : loud[-1] + 1] if loud.size else samples


def utterances(voices: tuple[str, ...], variants: tuple[str, ...], seed: int) -> list:
    """(class index, samples) for every word × voice × variant × 2 random speeds/pitches."""
    rng = np.random.default_rng(seed)
    found = []
    for (label, word), voice, variant in itertools.product(enumerate(WORDS), voices, variants):
        for _ in range(2):
            speed, pitch = int(rng.integers(120, 220)), int(rng.integers(25, 75))
            found.append((label, speak(word, voice + variant, speed, pitch)))
    return found


def noise(rng: np.random.Generator, length: int) -> np.ndarray:
    """White or pink-ish noise with unit standard deviation."""
    white = rng.normal(size=length)
    if rng.random() < 0.5:
        spectrum = np.fft.rfft(white) / np.sqrt(np.arange(1, length // 2 + 2))
        white = np.fft.irfft(spectrum, n=length)
    return (white / (white.std() + 1e-9)).astype(np.float32)


def make_clip(rng: np.random.Generator, speech: np.ndarray | None) -> np.ndarray:
    """One 1 s clip: the utterance at a random place (or none), random gain, random noise."""
    clip = np.zeros(LENGTH, np.float32)
    if speech is not None:
        speech = speech[:LENGTH] * rng.uniform(0.1, 0.9) / (np.abs(speech).max() + 1e-9)
        start = int(rng.integers(0, LENGTH - len(speech) + 1))
        clip[start : start + len(speech)] = speech
    level = 0.0 if rng.random() < 0.3 else 10 ** rng.uniform(-3.5, -1.5)
    return clip + level * noise(rng, LENGTH)


def make_set(
    spoken: list, per_utterance: int, backgrounds: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Clips (N, LENGTH) and labels: each utterance placed ``per_utterance`` times, plus noise."""
    rng = np.random.default_rng(seed)
    clips, labels = [], []
    for label, speech in spoken:
        for _ in range(per_utterance):
            clips.append(make_clip(rng, speech))
            labels.append(label)
    for _ in range(backgrounds):
        clips.append(make_clip(rng, None))
        labels.append(len(WORDS))
    return np.stack(clips), np.array(labels)


def mel_filters() -> np.ndarray:
    """(N_MELS, N_FFT // 2 + 1) triangular mel filterbank (HTK mel scale)."""
    bins = N_FFT // 2 + 1
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    hz = lambda m: 700 * (10 ** (m / 2595) - 1)  # noqa: E731
    edges = hz(np.linspace(mel(20.0), mel(RATE / 2), N_MELS + 2))
    freqs = np.linspace(0, RATE / 2, bins)
    bank = np.zeros((N_MELS, bins))
    for m in range(N_MELS):
        low, mid, high = edges[m : m + 3]
        bank[m] = np.clip(
            np.minimum((freqs - low) / (mid - low), (high - freqs) / (high - mid)), 0, None
        )
    return bank.astype(np.float32)


class LogMel(nn.Module):
    """Waveform (N, LENGTH) → log-mel (N, 1, N_MELS, frames), with a conv1d DFT (ONNX-friendly)."""

    def __init__(self) -> None:
        super().__init__()
        n = np.arange(N_FFT)
        window = np.hanning(N_FFT + 1)[:-1]
        k = np.arange(N_FFT // 2 + 1)[:, None]
        cos = np.cos(2 * np.pi * k * n / N_FFT) * window
        sin = -np.sin(2 * np.pi * k * n / N_FFT) * window
        basis = np.concatenate([cos, sin])[:, None, :].astype(np.float32)
        self.register_buffer("basis", torch.from_numpy(basis))
        self.register_buffer("mel", torch.from_numpy(mel_filters()))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Log-mel energies."""
        spec = nn.functional.conv1d(waveform[:, None, :], self.basis, stride=HOP)
        half = spec.shape[1] // 2
        power = spec[:, :half] ** 2 + spec[:, half:] ** 2
        mel = torch.einsum("mf,nft->nmt", self.mel, power)
        return torch.log(mel + 1e-6)[:, None]


class KeywordNet(nn.Module):
    """LogMel → 3 conv blocks → global max pool → linear (5 classes)."""

    def __init__(self) -> None:
        super().__init__()
        self.front = LogMel()
        self.norm = nn.BatchNorm2d(1)
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 48, 3, padding=1),
            nn.BatchNorm2d(48),
            nn.ReLU(),
        )
        self.head = nn.Linear(48, len(CLASSES))

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """Logits (N, 5)."""
        features = self.features(self.norm(self.front(waveform)))
        return self.head(features.amax(dim=(2, 3)))


def write_example(out: Path) -> dict:
    """A 2 s test recording: noise, and "left" starting at 1.10 s (for tests and docs)."""
    rng = np.random.default_rng(11)
    speech = speak("left", "en-gb-x-rp", 160, 50)
    speech = 0.6 * speech / np.abs(speech).max()
    clip = 0.003 * rng.normal(size=2 * RATE).astype(np.float32)
    start = int(1.10 * RATE)
    clip[start : start + len(speech)] += speech
    path = out / "audio-example-left.flac"
    soundfile.write(str(path), clip, RATE, subtype="PCM_16")
    word = {
        "file": path.name,
        "word": "left",
        "start_s": 1.10,
        "stop_s": (start + len(speech)) / RATE,
    }
    (out / "audio-example-left.json").write_text(json.dumps(word, indent=2) + "\n")
    return word


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("rex_stream/data/models"))
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    torch.manual_seed(0)
    train_speech = utterances(TRAIN_VOICES, TRAIN_VARIANTS, seed=1)
    test_speech = utterances(TEST_VOICES, TEST_VARIANTS, seed=2)
    x_train, y_train = make_set(train_speech, 6, 300, seed=3)
    x_test, y_test = make_set(test_speech, 4, 60, seed=4)
    print(f"train {len(y_train)} clips, test {len(y_test)} clips (held-out voices)")
    model = KeywordNet()
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(xt))
        for start in range(0, len(xt), 64):
            rows = order[start : start + 64]
            loss = nn.functional.cross_entropy(model(xt[rows]), yt[rows])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        model.eval()
        with torch.no_grad():
            predicted = model(torch.from_numpy(x_test)).argmax(1).numpy()
        accuracy = float((predicted == y_test).mean())
        print(f"epoch {epoch}: loss {loss.item():.3f} held-out accuracy {accuracy:.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "audio-keywords16k.onnx"
    torch.onnx.export(
        model,
        (torch.zeros(1, LENGTH),),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}},
        opset_version=17,
        dynamo=False,
    )
    report = {
        "model": path.name,
        "classes": list(CLASSES),
        "held_out_accuracy": accuracy,
        "test_size": len(y_test),
        "train_size": len(y_train),
    }
    (args.out / "audio-keywords16k.json").write_text(json.dumps(report, indent=2) + "\n")
    write_example(args.out)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
