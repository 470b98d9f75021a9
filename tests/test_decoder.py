"""Lexicon decoding: sorted top-k from the lexicon only; new words decodable without retraining."""

import numpy as np
import pytest

from fl_app.decoder.evaluation import evaluate_decoder
from fl_app.decoder.keyboard import named_keyboard
from fl_app.decoder.ranking import FusionWeights, LearnedDecoder
from fl_app.decoder.template import TemplateDecoder
from fl_app.synthetic.motion import generate_trace
from fl_app.synthetic.style import tidy_style
from fl_app.synthetic.users import make_user


def clean_trace(word, keyboard, ms_per_key=150.0, step_ms=15.0):
    """A tidy trace through the word's key centres (enough for decoding checks)."""
    centres = keyboard.word_centres(word)
    t_keys = np.arange(len(centres)) * ms_per_key
    t = np.arange(0.0, t_keys[-1] + step_ms, step_ms)
    xy = np.stack([np.interp(t, t_keys, centres[:, 0]), np.interp(t, t_keys, centres[:, 1])], 1)
    return np.concatenate([xy, t[:, None]], axis=1)


@pytest.fixture(scope="module")
def decoder(small_trained, small_lexicon):
    spec, model, _, _ = small_trained
    return LearnedDecoder(model, spec.features, small_lexicon)


@pytest.mark.parametrize("k", [1, 4, 8])
def test_output_sorted_and_from_lexicon(decoder, small_trained, k):
    _, _, _, test = small_trained
    for swipe in test[:20]:
        out = decoder.decode(swipe.points, swipe.keyboard, k=k)
        assert len(out) == k
        scores = [s for _, s in out]
        assert scores == sorted(scores, reverse=True)
        assert all(word in decoder.lexicon for word, _ in out)
        assert len({w for w, _ in out}) == k


@pytest.mark.parametrize("word", ["garden", "brown", "hotel"])
def test_added_word_becomes_decodable(small_trained, small_lexicon, word):
    """Words outside the lexicon (and never trained on) decode once added: no retraining."""
    spec, model, _, _ = small_trained
    decoder = LearnedDecoder(model, spec.features, small_lexicon)
    kb = named_keyboard("qwerty-en", 411, 240)
    style = make_user(3, small_lexicon).style
    traces = [generate_trace(word, kb, style, np.random.default_rng(i)) for i in range(3)]
    assert word not in decoder.lexicon
    assert all(word not in [w for w, _ in decoder.decode(p, kb, k=8)] for p in traces)
    decoder.add_words({word: 1e-4})
    top = [[w for w, _ in decoder.decode(p, kb, k=4)] for p in traces]
    assert sum(t[0] == word for t in top) >= 2, top


def test_decoder_uses_the_given_geometry(decoder, small_lexicon):
    """The same gesture decodes the same on a small phone and a large tablet keyboard."""
    style = tidy_style()
    for kb in (named_keyboard("qwerty-en", 320, 220), named_keyboard("qwerty-en", 1400, 600)):
        for word in ("people", "world"):
            trace = generate_trace(word, kb, style, np.random.default_rng(1))
            assert decoder.decode(trace, kb, k=1)[0][0] == word


def test_short_training_beats_untrained_decoding(small_trained, small_lexicon):
    spec, model, untrained, test = small_trained
    ctc_only = FusionWeights(template=0.0, prior=0.0)
    trained = evaluate_decoder(
        LearnedDecoder(model, spec.features, small_lexicon, fusion=ctc_only), test
    )
    fresh = evaluate_decoder(
        LearnedDecoder(untrained, spec.features, small_lexicon, fusion=ctc_only), test
    )
    assert trained["top1"] > fresh["top1"] + 0.4, (trained, fresh)


def test_a_decoder_over_other_weights_decodes_as_one_built_for_them(small_trained, small_lexicon):
    """`with_model` (a node's decoder for each round's weights) shares the lexicon's banks and
    targets, and ranks exactly as a decoder built from scratch over the new weights."""
    spec, model, untrained, test = small_trained
    trained_decoder = LearnedDecoder(model, spec.features, small_lexicon)
    swapped = trained_decoder.with_model(untrained)
    fresh = LearnedDecoder(untrained, spec.features, small_lexicon)
    assert swapped.template is trained_decoder.template and swapped.model is untrained
    for swipe in test[:10]:
        got = swapped.decode(swipe.points, swipe.keyboard, k=5)
        want = fresh.decode(swipe.points, swipe.keyboard, k=5)
        assert [w for w, _ in got] == [w for w, _ in want]
        assert np.allclose([s for _, s in got], [s for _, s in want])
    # The trained decoder still decodes with its own weights.
    top = [trained_decoder.decode(s.points, s.keyboard, k=1)[0][0] for s in test[:10]]
    top_swapped = [swapped.decode(s.points, s.keyboard, k=1)[0][0] for s in test[:10]]
    assert sum(t == s.word for t, s in zip(top, test)) > sum(
        t == s.word for t, s in zip(top_swapped, test)
    )


def test_template_decoder_sorted_and_prefers_clean_word(small_lexicon):
    dec = TemplateDecoder(small_lexicon)
    kb = named_keyboard("qwerty-en", 375, 217)
    out = dec.decode(clean_trace("world", kb), kb, k=8)
    assert out[0][0] == "world"
    assert [s for _, s in out] == sorted((s for _, s in out), reverse=True)


def test_ctc_scores_are_each_words_own_ctc_likelihood(decoder, small_trained):
    """Scoring a shortlist at once (padded lexicon targets) gives each word's own CTC score."""
    import torch
    import torch.nn.functional as F

    from fl_app.decoder.features import encode_word

    _, _, _, test = small_trained
    swipe = test[0]
    logp = decoder.frame_log_probs([(swipe.points, swipe.keyboard)])[0]
    shortlist = decoder.shortlist(swipe.points, swipe.keyboard)
    scores = decoder.candidate_scores(swipe.points, swipe.keyboard, logp, shortlist).ctc
    for i, score in zip(shortlist.lexicon_index[:12], scores[:12], strict=True):
        target = torch.tensor([encode_word(decoder.lexicon.words[i], decoder.spec.alphabet)])
        own = -F.ctc_loss(
            logp[:, None, :],
            target,
            torch.tensor([logp.shape[0]]),
            torch.tensor([target.shape[1]]),
            blank=0,
            reduction="sum",
        )
        assert score == pytest.approx(float(own), rel=1e-5, abs=1e-4)


def test_a_word_outside_the_alphabet_scores_impossible(small_trained, small_lexicon):
    from fl_app.decoder.ranking import IMPOSSIBLE

    spec, model, _, test = small_trained
    decoder = LearnedDecoder(model, spec.features, small_lexicon.with_words(["naïve"]))
    swipe = test[0]
    logp = decoder.frame_log_probs([(swipe.points, swipe.keyboard)])[0]
    idx = np.array([decoder.lexicon.words.index("naïve"), decoder.lexicon.words.index("the")])
    scores = decoder.ctc_scores(logp, idx)
    assert scores[0] == IMPOSSIBLE
    assert IMPOSSIBLE < scores[1] < 0


def test_serving_module_matches_the_model(small_trained):
    """The scripted model the sidecar serves gives each swipe the eager model's output for that
    swipe alone, whether it is decoded alone or batched, and shares the model's weights."""
    import torch

    from fl_app.decoder.features import swipe_features
    from fl_app.decoder.model import serving_module

    spec, model, _, test = small_trained
    scripted = serving_module(model)
    feats = [
        torch.from_numpy(swipe_features(s.points, s.keyboard, spec.features)) for s in test[:5]
    ]
    x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    lengths = torch.tensor([len(f) for f in feats])
    assert len(set(lengths.tolist())) > 1  # rows of different lengths: padding in the batch
    with torch.inference_mode():
        batched, batched_len = scripted(x, lengths)
        for i, f in enumerate(feats):
            alone, alone_len = model(f[None], lengths[i : i + 1])
            served, served_len = scripted(f[None], lengths[i : i + 1])
            assert torch.equal(alone_len, served_len) and batched_len[i] == alone_len[0]
            assert torch.allclose(alone, served, atol=1e-5)
            assert torch.allclose(alone[0], batched[i, : alone_len[0]], atol=1e-5)
    assert scripted.head.weight.data_ptr() == model.head.weight.data_ptr()


def test_the_training_forward_gives_each_row_its_answer_alone(small_trained):
    """Batched evaluation (score_many, tune_fusion) and training see what a sidecar computes
    for a swipe alone: padding past a row's end reaches none of its frames."""
    import torch

    from fl_app.decoder.features import swipe_features

    spec, model, _, test = small_trained
    feats = [
        torch.from_numpy(swipe_features(s.points, s.keyboard, spec.features)) for s in test[:8]
    ]
    x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)
    lengths = torch.tensor([len(f) for f in feats])
    assert len(set(lengths.tolist())) > 2
    with torch.inference_mode():
        batched, out_len = model.eval()(x, lengths)
        for i, f in enumerate(feats):
            alone, _ = model(f[None], lengths[i : i + 1])
            assert torch.allclose(alone[0], batched[i, : int(out_len[i])], atol=1e-5), i


@pytest.mark.parametrize("quantize", [False, True])
def test_served_rows_do_not_depend_on_their_neighbours(small_trained, quantize):
    """A swipe's log-probabilities are the same alone and batched beside a longer, extreme
    neighbour: no padding leaks into a row, and no activation scale is shared by the batch
    (int8 dynamic quantization shared one; the served weights are float16 instead)."""
    import torch

    from fl_app.decoder.features import swipe_features
    from fl_app.decoder.model import serving_module

    spec, model, _, test = small_trained
    served = serving_module(model, quantize=quantize)
    feats = [
        torch.from_numpy(swipe_features(s.points, s.keyboard, spec.features)) for s in test[:6]
    ]
    longest = max(len(f) for f in feats)
    extreme = torch.full((longest + 8, feats[0].shape[1]), 1e4)
    extreme[::2] *= -1
    rows = feats + [extreme]
    x = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
    lengths = torch.tensor([len(f) for f in rows])
    with torch.inference_mode():
        batched, out_len = served(x, lengths)
        for i, f in enumerate(feats):
            alone, _ = served(f[None], lengths[i : i + 1])
            n = int(out_len[i])
            assert torch.allclose(alone[0], batched[i, :n], atol=1e-5), i


def test_quantized_serving_module_decodes_like_the_float_model(small_trained, small_lexicon):
    """Quantized serving (float16 weights): log-probabilities close to the float model's and
    the same top word on almost every held-out swipe; its weights are its own copy."""
    import torch

    from fl_app.decoder.model import serving_module

    spec, model, _, test = small_trained
    quantized = serving_module(model, quantize=True)
    assert "quantized.dynamic" in str(quantized.head.graph)  # a float16-weight Linear serves
    float_decoder = LearnedDecoder(model, spec.features, small_lexicon)
    quantized_decoder = LearnedDecoder(quantized, spec.features, small_lexicon)
    pairs = [(s.points, s.keyboard) for s in test[:40]]
    alone = [float_decoder.frame_log_probs([pair])[0] for pair in pairs]  # no padding
    for a, b in zip(alone, quantized_decoder.frame_log_probs(pairs)):
        assert torch.allclose(a, b, atol=0.05)
    same = sum(
        float_decoder.decode(p, kb, k=1)[0][0] == quantized_decoder.decode(p, kb, k=1)[0][0]
        for p, kb in pairs
    )
    assert same >= 38


def test_the_length_bonus_adds_its_weight_per_letter_of_the_ctc_target(decoder, small_trained):
    """Each candidate's fused score rises by the bonus times its collapsed letter count, so a
    longer word the trace also fits can win the close call a short word used to win."""
    from dataclasses import replace

    from fl_app.decoder.features import collapse_repeats

    _, _, _, test = small_trained
    swipe = test[0]
    logp = decoder.frame_log_probs([(swipe.points, swipe.keyboard)])[0]
    scores = decoder.candidate_scores(swipe.points, swipe.keyboard, logp)
    plain = scores.combined(replace(decoder.fusion, length_bonus=0.0))
    bonus = scores.combined(replace(decoder.fusion, length_bonus=1.5))
    letters = [len(collapse_repeats(decoder.lexicon.words[i])) for i in scores.lexicon_index]
    np.testing.assert_allclose(bonus - plain, 1.5 * np.array(letters))
    assert len(set(letters)) > 1  # the bonus reorders, not only shifts, the candidates


def test_tuned_fusion_weights_decode_as_tuning_measured(small_trained, small_lexicon):
    """tune_fusion replays the cut and the ranking (length bonus included): a decoder given
    the weights it chose scores the top-1 it reported, and the length bonus it weighed is one
    of the candidates a decoder can be given."""
    from dataclasses import replace

    from fl_app.decoder.tuning import LENGTH_BONUS_GRID, tune_fusion

    spec, model, _, test = small_trained
    start = FusionWeights(shortlist=8, wide=24)  # a model cut to replay as well
    decoder = LearnedDecoder(model, spec.features, small_lexicon, fusion=start)
    weights, top1 = tune_fusion(decoder, test[:150])
    assert weights.length_bonus in LENGTH_BONUS_GRID
    decoder.fusion = weights
    assert evaluate_decoder(decoder, test[:150])["top1"] == pytest.approx(top1)
    decoder.fusion = replace(weights, length_bonus=0.0)
    assert evaluate_decoder(decoder, test[:150])["top1"] <= top1


def test_fusion_weights_tuned_for_the_suggestion_bar(small_trained, small_lexicon):
    """tune_fusion(k=4) chooses by top-4: a decoder given its weights shows the truth among
    four suggestions as often as tuning reported, and no less often than with the weights
    chosen for top-1."""
    from fl_app.decoder.tuning import tune_fusion

    spec, model, _, test = small_trained
    swipes = test[:150]
    decoder = LearnedDecoder(
        model, spec.features, small_lexicon, fusion=FusionWeights(shortlist=8, wide=24)
    )
    for_top1, _ = tune_fusion(decoder, swipes)
    for_top4, top4 = tune_fusion(decoder, swipes, k=4)
    decoder.fusion = for_top4
    assert evaluate_decoder(decoder, swipes)["top4"] == pytest.approx(top4)
    decoder.fusion = for_top1
    assert evaluate_decoder(decoder, swipes)["top4"] <= top4
