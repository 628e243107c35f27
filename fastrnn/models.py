"""Whole models: recurrent layers + a head + a loss, trained by BPTT.

* :class:`SequenceModel` -- an (optional) token :class:`~fastrnn.layers.Embedding`, one
  recurrent layer stack (:class:`~fastrnn.layers.RNN`, ``LSTM`` or ``GRU``) and a head
  (many-to-many, many-to-one, one-to-many); ``fit`` / ``predict`` / ``predict_proba`` /
  ``evaluate`` / ``generate`` / ``stepper``.
* :class:`Seq2Seq` -- encoder-decoder (many-to-many with a delay): teacher forcing in
  training, greedy decoding in inference.

Data given to models is sample-first: ``x`` (N, T, I) or tokens (N, T); targets (N,) or
(N, C) for many-to-one, (N, T) or (N, T, C) for per-step heads; ``lengths`` (N,).  The
training loop is :mod:`fastrnn.training`'s; what the targets are, how entries are counted
and what a prediction is, the loss says (:mod:`fastrnn.losses`).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import losses
from ._validate import all_finite, as_array, float_array, lengths_array, positive_int, \
    seed_value, step_mask
from .heads import HEAD_TYPES, Head, ManyToMany, ManyToOne, OneToMany, sample_logits
from .layers import RNN, Embedding, zero_gradient
from .optim import Optimizer
from .precision import precision_scope
from .sequential import _RNN_TYPES, Sequential, _checked_lengths, _not_empty
from .streaming import Stepper
from .training import History, _Fittable, loss_sums

__all__ = ["SequenceModel", "Seq2Seq"]

_RNN_BY_CELL = {name.lower(): cls for name, cls in _RNN_TYPES.items()}   # build's ``cell``


# ---------------------------------------------------------------------------------------
# SequenceModel
# ---------------------------------------------------------------------------------------

class SequenceModel(Sequential):
    r"""A recurrent network with a head and a loss: a preset of
    :class:`~fastrnn.Sequential`.

    ``embedding`` (optional) turns token inputs (N, T) into vectors; ``rnn`` is an
    :class:`~fastrnn.RNN`, :class:`~fastrnn.LSTM` or :class:`~fastrnn.GRU` (or
    ``FastRNN``, ``FastGRNN``); ``head`` a :class:`~fastrnn.heads.ManyToMany`,
    :class:`~fastrnn.heads.ManyToOne` or :class:`~fastrnn.heads.OneToMany`; ``loss`` a
    name or a loss object.  For per-step heads the loss is averaged over the valid steps
    (``lengths``).

    The model is the Sequential of its named layers ``embedding`` (when given), ``rnn``
    and ``head`` (so its parameters are ``embedding.weight``, ``rnn.weight_ih_l0``,
    ``head.readout.weight``, ...), trained and run by the container's code; what it adds
    is the recurrent state (``forward_train``'s ``state0`` and ``state``), truncated BPTT,
    streaming (:meth:`stepper`), generation, :meth:`build` and its own model file
    (``config``).  ``model.rnn``, ``model.head`` and ``model.embedding`` (None without
    one) are the parts; assigning one replaces it.

    Build one directly or with :meth:`build`:

    >>> import numpy as np, fastrnn
    >>> model = fastrnn.SequenceModel.build("gru", input_size=8, hidden_size=16,
    ...                                     output_size=10, head="many_to_one", seed=0)
    >>> x = np.random.default_rng(0).random((32, 8, 8), dtype=np.float32)
    >>> y = np.arange(32) % 10
    >>> history = model.fit(x, y, epochs=2, batch_size=8, progress=False, seed=0)
    >>> model.predict(x).shape
    (32,)
    """

    #: a whole model: not a layer of another container (its forward_train has states)
    _nestable = False

    def __init__(self, rnn, head: Head, loss="cross_entropy", embedding: Embedding | None = None):
        if type(rnn) not in _RNN_TYPES.values():
            raise TypeError(f"rnn must be a fastrnn RNN, LSTM, GRU, FastRNN or FastGRNN, got "
                            f"{type(rnn).__name__}")
        if not isinstance(head, Head):
            raise TypeError(f"head must be a fastrnn head, got {type(head).__name__}")
        width = rnn.state_size * rnn.num_directions
        if head.in_features != width:
            raise ValueError(f"head.in_features must equal the rnn's output width "
                             f"(proj_size or hidden_size)*num_directions={width}, got "
                             f"{head.in_features}")
        if isinstance(head, ManyToOne) and head.num_directions != rnn.num_directions:
            raise ValueError(f"head.num_directions must equal the rnn's "
                             f"({rnn.num_directions}), got {head.num_directions}")
        if embedding is not None:
            if not isinstance(embedding, Embedding):
                raise TypeError(f"embedding must be a fastrnn Embedding, got "
                                f"{type(embedding).__name__}")
            if embedding.embedding_dim != rnn.input_size:
                raise ValueError(f"embedding.embedding_dim must equal rnn.input_size="
                                 f"{rnn.input_size}, got {embedding.embedding_dim}")
        for m in (embedding, head.readout):
            if m is not None and m.dtype != rnn.dtype:
                raise TypeError(f"every part must have the rnn's dtype {rnn.dtype}, "
                                f"got {m.dtype} in {type(m).__name__}")
        parts = {"rnn": rnn, "head": head}
        super().__init__(parts if embedding is None else {"embedding": embedding, **parts},
                         losses.get_loss(loss))
        self.embedding: Embedding | None = embedding
        self.rnn = rnn
        self.head = head

    @classmethod
    def build(cls, cell: str = "lstm", *, input_size: int | None = None, hidden_size: int,
              output_size: int, head: str = "many_to_many", num_layers: int = 1,
              bidirectional: bool = False, dropout: float = 0.0, vocab_size: int | None = None,
              embedding_dim: int | None = None, loss="cross_entropy", nonlinearity="tanh",
              dtype=np.float32, seed: int | None = None, **layer_options) -> SequenceModel:
        """A model from sizes: ``cell`` 'rnn' | 'lstm' | 'gru' | 'fastrnn' | 'fastgrnn';
        ``head`` 'many_to_many' | 'many_to_one' | 'one_to_many'; token inputs when
        ``vocab_size`` is given.  Further keyword arguments go to the recurrent layer's
        constructor (``reverse=True``, the GRU's ``reset_after=False``, the LSTM's
        ``peephole=True``, FastGRNN's ``w_rank``, ...)."""
        seeds = np.random.SeedSequence(seed_value(seed)).generate_state(3)
        rnn_type = _RNN_BY_CELL.get(str(cell).lower())
        if rnn_type is None:
            raise ValueError(f"cell must be 'rnn', 'lstm' or 'gru' (or 'fastrnn', "
                             f"'fastgrnn'), got {cell!r}")
        embedding = None
        if vocab_size is not None:
            embedding_dim = embedding_dim or input_size or hidden_size
            embedding = Embedding(vocab_size, embedding_dim, dtype=dtype, seed=int(seeds[0]))
            input_size = embedding_dim
        if input_size is None:
            raise ValueError("input_size is required without vocab_size")
        extra = {"nonlinearity": nonlinearity} if rnn_type is RNN else {}
        rnn = rnn_type(input_size, hidden_size, num_layers=num_layers,
                       bidirectional=bidirectional, dropout=dropout, dtype=dtype,
                       seed=int(seeds[1]), **extra, **layer_options)
        D = 2 if bidirectional else 1
        heads = {"many_to_many": ManyToMany, "many_to_one": ManyToOne,
                 "one_to_many": OneToMany}
        if head not in heads:
            raise ValueError(f"head must be one of {sorted(heads)}, got {head!r}")
        kw = {"num_directions": D} if head == "many_to_one" else {}
        h = heads[head](D * rnn.state_size, output_size, dtype=dtype, seed=int(seeds[2]),
                        **kw)
        return cls(rnn, h, loss, embedding)

    # -- configuration (for io) ------------------------------------------------------------

    def config(self) -> dict:
        r = self.rnn
        rnn = r.config()
        emb = None
        if self.embedding is not None:
            e = self.embedding
            emb = {"num_embeddings": e.num_embeddings, "embedding_dim": e.embedding_dim,
                   "padding_idx": e.padding_idx}
        return {"type": "SequenceModel", "dtype": r.dtype.name, "rnn": rnn,
                "head": self.head.config(), "embedding": emb, "loss": self.loss.config()}

    @classmethod
    def from_config(cls, cfg: dict, dtype=None, seed: int | None = None) -> SequenceModel:
        """The model a :meth:`config` describes (its file's architecture); ``dtype`` and
        ``seed`` are not read (the configuration has the dtype)."""
        dtype = np.dtype(cfg["dtype"])
        r = dict(cfg["rnn"])
        rnn = _RNN_TYPES[r.pop("type")](**r, dtype=dtype)
        head = HEAD_TYPES[cfg["head"]["type"]].from_config(cfg["head"], dtype)
        emb = Embedding(**cfg["embedding"], dtype=dtype) if cfg["embedding"] else None
        return cls(rnn, head, losses.from_config(cfg["loss"]), emb)

    # -- data ------------------------------------------------------------------------------

    def _inputs(self, x, name="x") -> np.ndarray:
        if self.embedding is not None:
            t = as_array(x, name)
            if t.dtype.kind not in "iu":
                raise TypeError(f"{name} must hold integer tokens, got dtype {t.dtype}")
            if t.ndim != 2:
                raise ValueError(f"{name} must be 2-D tokens (N, T), got shape {t.shape}")
            _not_empty(t, name)
            V = self.embedding.num_embeddings
            if t.size and (t.min() < 0 or t.max() >= V):
                raise ValueError(f"{name} tokens must lie in [0, {V}), got values in "
                                 f"[{t.min()}, {t.max()}]")
            return t
        a = float_array(x, name, self.dtype, 3)
        if a.shape[2] != self.rnn.input_size:
            raise ValueError(f"{name}.shape[-1] must equal input_size={self.rnn.input_size}, "
                             f"got {a.shape[2]}")
        _not_empty(a, name)
        return a

    def _targets(self, y, x: np.ndarray, name="y") -> np.ndarray:
        N, T = x.shape[0], x.shape[1]
        lead = (N, T) if self.head.per_step else (N,)
        return self.loss.check_targets(np.asarray(y), lead, self.head.out_features,
                                       self.dtype, name)

    def _columns(self, x, y, lengths, names=("x", "y")):
        """``(x, y, lengths)`` of a data set, checked, non-finite values refused."""
        x, lengths = self._checked_inputs(x, lengths, names[0])
        y = self._targets(y, x, names[1])
        all_finite(y, names[1], lengths if self.head.per_step else None)
        return x, y, lengths

    # -- forward / backward on a sample-first batch ----------------------------------------

    @property
    def _carry(self) -> int:
        """The position of the recurrent layer, whose state the model carries."""
        return 0 if self.embedding is None else 1

    def forward_train(self, x, lengths=None, state0=None):
        """Forward pass on a sample-first batch, keeping what backward needs.

        Returns ``(out, state, backward)``: ``out`` (B, T, C) for per-step heads or (B, C);
        ``backward(dout)`` adds every gradient into ``.grad`` and returns ``dstate0``.
        """
        out, state, chain_backward = self._run(x, _checked_lengths(lengths, x), True, state0,
                                               self._carry)

        def backward(dout):
            # without an embedding nothing reads the input's gradient: not computed
            return chain_backward(dout, False)[1]

        return out, state, backward

    def _forward(self, x, lengths=None, state0=None):
        """``(out, state)``: :meth:`forward_train`'s at inference."""
        out, state, _ = self._run(x, lengths, False, state0, self._carry)
        return out, state

    # -- public API ------------------------------------------------------------------------

    def fit(self, x, y, lengths=None, *, epochs: int = 10, batch_size: int = 32,
            optimizer: Optimizer | None = None, validation_data=None,
            clip_norm: float | None = None, tbptt: int | None = None, callbacks=(),
            progress: bool = True, shuffle: bool = True, seed: int | None = None,
            initial_epoch: int = 0, validation_split: float = 0.0, sample_weight=None,
            class_weight: dict | None = None, precision: str | None = None) -> History:
        """Train by mini-batch BPTT.

        ``validation_data`` is ``(x, y)``, ``(x, y, lengths)`` or ``(x, y, lengths,
        sample_weight)``; ``validation_split`` (in [0, 1), instead of it) keeps the last
        fraction of the samples, before shuffling, for validation, as Keras does.
        ``sample_weight`` weighs each sample's loss, (N,), or each step's for a per-step
        head, (N, T); ``class_weight`` (a dict class -> weight, for ``cross_entropy`` and
        one-output ``bce_with_logits``; a class left out weighs 1) weighs each training
        entry by its target's class, times its sample weight.  The weighted loss is
        Keras's, ``sum(w * loss) / count`` (:mod:`fastrnn.training`).  ``clip_norm`` clips the
        global gradient norm before each step; ``tbptt`` splits long sequences into windows
        of that many steps, carrying the state across windows (per-step heads only);
        ``callbacks`` see every epoch (:class:`~fastrnn.callbacks.EarlyStopping`,
        :class:`~fastrnn.callbacks.ModelCheckpoint`); ``seed`` fixes the shuffling.  A
        non-finite loss or gradient stops training with the weights of the last finite
        loss and says so in ``History.stop_reason``.  The optimizer defaults to
        Adam(lr=1e-3).  ``precision="bfloat16"`` trains in mixed precision: the recurrent
        layers' products in bf16 with float32 sums, everything else (master weights,
        gradients, optimizer) in float32 (:func:`fastrnn.autocast`).

        ``initial_epoch`` resumes an interrupted run (as in Keras): epochs
        ``initial_epoch .. epochs-1`` are run, shuffled as that run shuffled them with the
        same ``seed``, and callbacks see their absolute numbers.  From the checkpoint
        :class:`~fastrnn.callbacks.ModelCheckpoint` wrote after epoch ``e``
        (``extra["epoch"]``), ``fit(..., optimizer=<the checkpoint's>, seed=<the same>, epochs=E,
        initial_epoch=e + 1)`` ends with the weights of the uninterrupted ``fit(epochs=E)``
        (without dropout: dropout masks come from the layer's own generator, which a
        loaded model does not restore).
        """
        with precision_scope(precision):
            return self._fit_model((x, y, lengths), validation_data, validation_split,
                                   sample_weight, class_weight, tbptt, epochs=epochs,
                                   batch_size=batch_size, optimizer=optimizer,
                                   clip_norm=clip_norm, callbacks=callbacks,
                                   progress=progress, shuffle=shuffle, seed=seed,
                                   initial_epoch=initial_epoch)

    def _fit_model(self, data, validation_data, validation_split, sample_weight,
                   class_weight, tbptt, *, epochs, batch_size, optimizer, clip_norm,
                   callbacks, progress, shuffle, seed, initial_epoch) -> History:
        columns, validation = self._fit_data(data, validation_data, validation_split,
                                             sample_weight, class_weight)
        if tbptt is not None:
            tbptt = positive_int(tbptt, "tbptt")
            if not self.head.per_step:
                raise ValueError("tbptt needs a per-step head (many-to-many); a many-to-one "
                                 "head reads only the last step")
        return self._fit(columns, validation, epochs=epochs, batch_size=batch_size,
                         optimizer=optimizer, clip_norm=clip_norm, callbacks=callbacks,
                         progress=progress, shuffle=shuffle, seed=seed,
                         train_kwargs={"tbptt": tbptt}, initial_epoch=initial_epoch)

    def stepper(self, batch_size: int = 1) -> Stepper:
        """A :class:`~fastrnn.streaming.Stepper` for streaming inference, one time step
        per call."""
        return Stepper(self, batch_size)

    def generate(self, prime, length: int, temperature: float = 1.0,
                 top_k: int | None = None, seed: int | None = None) -> np.ndarray:
        """One-to-many generation: read ``prime``, then feed each prediction back.

        Token models (with an embedding): ``prime`` is a 1-D token sequence (or (B, P) for
        a batch); each next token is drawn from ``softmax(logits / temperature)``
        restricted to the ``top_k`` most likely (temperature 0: argmax), with a seeded
        generator.  Real-valued models: ``prime`` (P, I) or (B, P, I) and each output is
        the next input (needs output_size == input_size).  Returns the ``length``
        generated steps: (length,) / (B, length) tokens or (length, I) / (B, length, I).
        """
        length = positive_int(length, "length")
        if not self.head.per_step:
            raise ValueError("generate needs a per-step head (one-to-many or many-to-many)")
        if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
            raise TypeError(f"temperature must be a number, got {type(temperature).__name__}")
        if not (math.isfinite(temperature) and temperature >= 0):
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if top_k is not None:
            top_k = positive_int(top_k, "top_k")
        rng = np.random.default_rng(seed_value(seed))
        tokens = self.embedding is not None
        p = np.asarray(prime)
        single = p.ndim == (1 if tokens else 2)
        if single:
            p = p[None]
        p, _ = self._checked_inputs(p, None, "prime")
        if p.shape[1] < 1:
            raise ValueError("prime must have at least one step")
        if not tokens and self.head.out_features != self.rnn.input_size:
            raise ValueError("generating real-valued sequences feeds outputs back as inputs: "
                             "output_size must equal input_size")
        stepper = self.stepper(p.shape[0])
        for t in range(p.shape[1]):
            out = stepper.step(p[:, t])
        results = []
        for _ in range(length):
            if tokens:
                nxt = sample_logits(out, rng, temperature, top_k)
            else:
                nxt = out.copy()
            results.append(nxt)
            out = stepper.step(nxt)
        gen = np.stack(results, axis=1)
        return gen[0] if single else gen

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        parts = [f"  embedding={self.embedding!r}"] if self.embedding is not None else []
        parts += [f"  rnn={self.rnn!r}", f"  head={self.head!r}", f"  loss={self.loss!r}"]
        return "SequenceModel(\n" + ",\n".join(parts) + "\n)"



# ---------------------------------------------------------------------------------------
# Encoder-decoder
# ---------------------------------------------------------------------------------------

class Seq2Seq(_Fittable):
    r"""Encoder-decoder over tokens (many-to-many with a delay).

    The encoder reads the source ``src`` (N, S) (with ``src_lengths``); its final state
    starts the decoder, which reads ``[bos, tgt_0, ..., tgt_{T-2}]`` (teacher forcing) and
    predicts ``tgt`` (N, T) through a many-to-many readout; the loss is cross-entropy over
    the valid target steps (``tgt_lengths``).  Inference decodes greedily from ``bos``.

    >>> import numpy as np, fastrnn
    >>> m = fastrnn.Seq2Seq.build("gru", src_vocab=6, tgt_vocab=6, hidden_size=16,
    ...                           bos_token=0, seed=0)
    >>> m.predict(np.array([[1, 2, 3]]), max_length=4).shape
    (1, 4)
    """

    def __init__(self, src_embedding: Embedding, encoder, tgt_embedding: Embedding, decoder,
                 head: ManyToMany, bos_token: int):
        super().__init__()
        for name, r in (("encoder", encoder), ("decoder", decoder)):
            if type(r) not in _RNN_TYPES.values():
                raise TypeError(f"{name} must be a fastrnn RNN, LSTM or GRU")
            if r.bidirectional:
                raise ValueError(f"{name} must be unidirectional")
        if type(encoder) is not type(decoder) or encoder.hidden_size != decoder.hidden_size \
                or encoder.num_layers != decoder.num_layers:
            raise ValueError("encoder and decoder must have the same cell, hidden_size and "
                             "num_layers (the encoder's final state starts the decoder)")
        if src_embedding.embedding_dim != encoder.input_size or \
                tgt_embedding.embedding_dim != decoder.input_size:
            raise ValueError("each embedding_dim must equal its rnn's input_size")
        if head.in_features != decoder.hidden_size:
            raise ValueError("head.in_features must equal decoder.hidden_size")
        if not 0 <= int(bos_token) < tgt_embedding.num_embeddings:
            raise ValueError(f"bos_token must be a target token, got {bos_token}")
        self.src_embedding = self._add_module("src_embedding", src_embedding)
        self.encoder = self._add_module("encoder", encoder)
        self.tgt_embedding = self._add_module("tgt_embedding", tgt_embedding)
        self.decoder = self._add_module("decoder", decoder)
        self.head = self._add_module("head", head)
        self.bos_token = int(bos_token)
        self.loss = losses.CrossEntropyLoss()

    _data_names = ("src", "tgt", "src_lengths", "tgt_lengths")

    @property
    def dtype(self) -> np.dtype:
        return self.encoder.dtype

    @classmethod
    def build(cls, cell: str = "gru", *, src_vocab: int, tgt_vocab: int, hidden_size: int,
              embedding_dim: int | None = None, num_layers: int = 1, bos_token: int = 0,
              dtype=np.float32, seed: int | None = None) -> Seq2Seq:
        """An encoder-decoder from sizes; ``cell`` 'rnn' | 'lstm' | 'gru'."""
        kind = str(cell).upper()
        if kind not in _RNN_TYPES:
            raise ValueError(f"cell must be 'rnn', 'lstm' or 'gru', got {cell!r}")
        E = embedding_dim or hidden_size
        s = [int(v) for v in np.random.SeedSequence(seed_value(seed)).generate_state(5)]
        R = _RNN_TYPES[kind]
        return cls(Embedding(src_vocab, E, dtype=dtype, seed=s[0]),
                   R(E, hidden_size, num_layers=num_layers, batch_first=True, dtype=dtype,
                     seed=s[1]),
                   Embedding(tgt_vocab, E, dtype=dtype, seed=s[2]),
                   R(E, hidden_size, num_layers=num_layers, batch_first=True, dtype=dtype,
                     seed=s[3]),
                   ManyToMany(hidden_size, tgt_vocab, dtype=dtype, seed=s[4]), bos_token)

    def config(self) -> dict:
        def rnn_cfg(r):
            return {"type": type(r).__name__, "input_size": r.input_size,
                    "hidden_size": r.hidden_size, "num_layers": r.num_layers, "bias": r.bias,
                    "batch_first": r.batch_first, "dropout": r.dropout}

        def emb_cfg(e):
            return {"num_embeddings": e.num_embeddings, "embedding_dim": e.embedding_dim,
                    "padding_idx": e.padding_idx}

        return {"type": "Seq2Seq", "dtype": self.encoder.dtype.name,
                "src_embedding": emb_cfg(self.src_embedding), "encoder": rnn_cfg(self.encoder),
                "tgt_embedding": emb_cfg(self.tgt_embedding), "decoder": rnn_cfg(self.decoder),
                "head": self.head.config(), "bos_token": self.bos_token}

    @classmethod
    def from_config(cls, cfg: dict) -> Seq2Seq:
        dt = np.dtype(cfg["dtype"])

        def rnn(c):
            c = dict(c)
            return _RNN_TYPES[c.pop("type")](**c, dtype=dt)

        h = dict(cfg["head"])
        h.pop("type")
        return cls(Embedding(**cfg["src_embedding"], dtype=dt), rnn(cfg["encoder"]),
                   Embedding(**cfg["tgt_embedding"], dtype=dt), rnn(cfg["decoder"]),
                   ManyToMany(**h, dtype=dt), cfg["bos_token"])

    def _tokens(self, a, name, vocab):
        t = np.asarray(a)
        if t.dtype.kind not in "iu" or t.ndim != 2:
            raise TypeError(f"{name} must be 2-D integer tokens (N, T), got {t.dtype} "
                            f"{t.shape}")
        _not_empty(t, name)
        if t.size and (t.min() < 0 or t.max() >= vocab):
            raise ValueError(f"{name} tokens must lie in [0, {vocab})")
        return t

    @staticmethod
    def _lengths(lengths, tokens: np.ndarray, name: str) -> np.ndarray | None:
        """``lengths`` of the (N, T) ``tokens``, checked; None stays None."""
        if lengths is None:
            return None
        return lengths_array(lengths, tokens.shape[0], tokens.shape[1], name=name)

    def _decoder_inputs(self, tgt):
        bos = np.full((tgt.shape[0], 1), self.bos_token, dtype=tgt.dtype)
        return np.concatenate([bos, tgt[:, :-1]], axis=1)

    def _loss_batch(self, batch, train: bool):
        src, tgt, src_len, tgt_len, weight = batch
        enc, dec = self.encoder, self.decoder
        src_in = enc._layout(src)
        if train:
            e_src, src_emb_backward = self.src_embedding.forward_train(src_in)
            y_enc, state, enc_backward = enc.forward_train(e_src, None, src_len)
        else:
            _, state = enc(self.src_embedding(src_in), None, src_len)
        dec_in = dec._layout(self._decoder_inputs(tgt))
        if train:
            e_tgt, tgt_emb_backward = self.tgt_embedding.forward_train(dec_in)
            y, _, dec_backward = dec.forward_train(e_tgt, state, tgt_len)
            out, head_backward = self.head.forward_train(y, None)
        else:
            y, _ = dec(self.tgt_embedding(dec_in), state, tgt_len)
            out = self.head(y, None)
        out = dec._layout(out)
        mask = step_mask(tgt_len, tgt.shape[1])
        ls, grad, n, ok = loss_sums(self.loss, out, tgt, mask, weight)
        if train:
            dy, _ = head_backward(dec._layout(grad))
            dx_dec, dstate0 = dec_backward(dy)
            tgt_emb_backward(dx_dec)
            # the encoder's outputs are not read: only its final state reaches the loss
            dx_enc, _ = enc_backward(zero_gradient(y_enc), dstate0)
            src_emb_backward(dx_enc)
        return ls, n, ok

    def _train_batch(self, batch, optimizer, clip_norm, snapshot):
        optimizer.zero_grad()
        ls, n, ok = self._loss_batch(batch, train=True)
        self._step(optimizer, ls, n, clip_norm, snapshot)
        return ls, n, ok

    def _eval_batch(self, batch):
        return self._loss_batch(batch, train=False)

    def _columns(self, src, tgt, src_lengths, tgt_lengths, names=("src", "tgt")):
        src = self._tokens(src, names[0], self.src_embedding.num_embeddings)
        tgt = self._tokens(tgt, names[1], self.tgt_embedding.num_embeddings)
        if src.shape[0] != tgt.shape[0]:
            raise ValueError(f"src and tgt must have the same number of sequences, got "
                             f"{src.shape[0]} and {tgt.shape[0]}")
        return (src, tgt, self._lengths(src_lengths, src, "src_lengths"),
                self._lengths(tgt_lengths, tgt, "tgt_lengths"))

    def fit(self, src, tgt, src_lengths=None, tgt_lengths=None, *, epochs: int = 10,
            batch_size: int = 32, optimizer: Optimizer | None = None, validation_data=None,
            clip_norm: float | None = None, callbacks=(), progress: bool = True,
            shuffle: bool = True, seed: int | None = None, initial_epoch: int = 0,
            validation_split: float = 0.0, sample_weight=None,
            class_weight: dict | None = None) -> History:
        """Train with teacher forcing; ``validation_data`` is ``(src, tgt)``, ``(src,
        tgt, src_lengths, tgt_lengths)`` or that and ``sample_weight``; ``sample_weight``
        is (N,) or (N, T) (per target token), ``class_weight`` weighs target tokens.
        Otherwise as :meth:`SequenceModel.fit`."""
        columns, validation = self._fit_data((src, tgt, src_lengths, tgt_lengths),
                                             validation_data, validation_split,
                                             sample_weight, class_weight)
        return self._fit(columns, validation, epochs=epochs, batch_size=batch_size,
                         optimizer=optimizer, clip_norm=clip_norm, callbacks=callbacks,
                         progress=progress, shuffle=shuffle, seed=seed, train_kwargs={},
                         initial_epoch=initial_epoch)

    def evaluate(self, src, tgt, src_lengths=None, tgt_lengths=None,
                 batch_size: int = 256, sample_weight=None) -> dict:
        """Teacher-forced loss (weighted by ``sample_weight`` if given) and per-token
        accuracy."""
        return self._evaluate((src, tgt, src_lengths, tgt_lengths), sample_weight,
                              batch_size)

    def _summary_parts(self):
        H, E, V = self.decoder.hidden_size, self.src_embedding.embedding_dim, \
            self.head.out_features
        parts = [("src_embedding", self.src_embedding, (None, None, E)),
                 ("encoder", self.encoder, (None, None, H)),
                 ("tgt_embedding", self.tgt_embedding,
                  (None, None, self.tgt_embedding.embedding_dim)),
                 ("decoder", self.decoder, (None, None, H)),
                 ("head", self.head, (None, None, V))]
        return parts

    def predict(self, src, src_lengths=None, max_length: int = 20,
                eos_token: int | None = None) -> np.ndarray:
        """Greedy decoding: (N, max_length) tokens; after ``eos_token`` (if given) a row
        repeats it."""
        src = self._tokens(src, "src", self.src_embedding.num_embeddings)
        max_length = positive_int(max_length, "max_length")
        sl = self._lengths(src_lengths, src, "src_lengths")
        enc = self.encoder
        _, state = enc(self.src_embedding(enc._layout(src)), None, sl)
        N = src.shape[0]
        tok = np.full(N, self.bos_token, dtype=np.int64)
        done = np.zeros(N, dtype=bool)
        out = np.empty((N, max_length), dtype=np.int64)
        dec = self.decoder
        for t in range(max_length):
            x = self.tgt_embedding(dec._layout(tok[:, None]))
            y, state = dec(x, state)
            logits = dec._layout(self.head(y, None))[:, 0]
            tok = np.where(done, tok, logits.argmax(-1))
            out[:, t] = tok
            if eos_token is not None:
                done |= tok == eos_token
                if done.all():
                    out[:, t + 1:] = eos_token
                    break
        return out

    def __repr__(self) -> str:
        return (f"Seq2Seq(\n  src_embedding={self.src_embedding!r},\n  encoder={self.encoder!r},"
                f"\n  tgt_embedding={self.tgt_embedding!r},\n  decoder={self.decoder!r},\n"
                f"  head={self.head!r},\n  bos_token={self.bos_token}\n)")
