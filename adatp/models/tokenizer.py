"""A tiny Qwen2-style byte-level BPE tokenizer, trained offline on a built-in English corpus.

The tiny test model needs a real ``transformers`` tokenizer (save/load, chat template, special
tokens) but nothing can be downloaded. This one copies the pieces of the Qwen2 tokenizer that the
pipeline relies on: NFC normalisation, Qwen2's pre-tokenisation regex followed by byte-level
mapping (so any text encodes, no unknown token), no BOS added, ``<|endoftext|>`` / ``<|im_start|>``
/ ``<|im_end|>`` specials, and ``<image>`` / ``<video>`` added right after them as single-id
special tokens, in the same order as the llava-hf checkpoints (151643..151647 there).
"""

from __future__ import annotations

import functools
from itertools import product

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

#: The chat template of the llava-hf LLaVA-OneVision checkpoints (Qwen2 ChatML): media placeholders
#: first in each turn, each followed by a newline, then the text. Verbatim from
#: transformers' ``convert_llava_onevision_weights_to_hf.py`` and the checkpoints' chat_template.json
#: (e.g. llava-hf/llava-onevision-qwen2-7b-si-hf, llava-hf/llava-onevision-qwen2-0.5b-si-hf processor_config).
LLAVA_ONEVISION_CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n'}}"
    "{# Render all images first #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{# Render all video then #}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>\n' }}{% endfor %}"
    "{# Render all text next #}"
    "{% if message['role'] != 'assistant' %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}"
    "{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{% generation %}{{ content['text'] }}{% endgeneration %}{% endfor %}"
    "{% endif %}"
    "{{'<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
IMAGE_TOKEN, VIDEO_TOKEN = "<image>", "<video>"
#: Added in this order after the BPE vocabulary, as in Qwen2 + LLaVA-OneVision.
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END, IMAGE_TOKEN, VIDEO_TOKEN)
#: Qwen2-VL / Qwen2.5-VL / Qwen3-VL vision specials, in the checkpoints' order (151652..151656 there).
VISION_START, VISION_END, VISION_PAD = "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>"
IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"
QWEN_VL_SPECIAL_TOKENS = (VISION_START, VISION_END, VISION_PAD, IMAGE_PAD, VIDEO_PAD)

#: The media and text part of Qwen2-VL / Qwen2.5-VL's chat template (their tokenizer_config.json):
#: a default system turn, each video as ``<|vision_start|><|video_pad|><|vision_end|>`` where it
#: stands in the content list. ``add_vision_id`` is kept; nothing else of the template is omitted.
QWEN2_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: The media and text part of Qwen3-VL-Instruct's chat template: no default system turn, media
#: placeholders where they stand. Its tool-calling and reasoning branches are left out (adatp asks
#: one question about one video); the rendered text of such a conversation is the same.
QWEN3_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: Qwen2's pre-tokenisation pattern (from its tokenizer.json).
QWEN2_PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
TARGET_VOCAB_SIZE = 2000  # upper bound for BPE; the corpus saturates it at roughly 1000-1500 tokens
MODEL_MAX_LENGTH = 32768  # Qwen2's context length

_COLOURS = "red blue green yellow black white orange purple pink brown grey golden silver dark bright pale".split()
_OBJECTS = (
    "ball car dog cat box person child woman man bird cup bottle chair table door window tree flower house "
    "bicycle truck bus train boat plane horse cow sheep phone laptop book bag hat shoe kite lamp clock camera "
    "guitar piano robot drone shape circle square triangle star cube cylinder line arrow sign wall road bridge "
    "apple banana orange sandwich pizza knife spoon plate bowl towel pillow blanket umbrella ladder rope bucket "
    "hammer screwdriver keyboard monitor television remote mirror candle basket balloon helmet jacket glove"
).split()
_ACTIONS = (
    "moves jumps rolls falls stops turns runs walks flies swims slides spins bounces appears disappears opens "
    "closes waves climbs drives rides throws catches picks drops pushes pulls lifts shakes rotates grows shrinks "
    "enters leaves crosses follows chases hides"
).split()
_PLACES = (
    "across the screen|into the room|out of the frame|behind the wall|on the table|under the bridge|"
    "near the window|along the road|over the fence|through the door|in the park|at the beach|on the grass|"
    "in the kitchen|down the hill|around the corner|toward the camera|away from the camera|in the background|"
    "in the foreground|on the left|on the right|at the top|at the bottom|in the middle"
).split("|")
_TIMES = (
    "At the start|At the end|In the first frame|In the last frame|After a while|Suddenly|Then|Later|"
    "Meanwhile|Before that|Finally|Near the end of the video|In the middle of the clip"
).split("|")
_QUESTIONS = (
    "What colour is the {o}?|What does the {o} do?|Where does the {c} {o} go?|How many {o}s are there?|"
    "What happens after the {o} {a}?|Why does the {o} stop?|Which object {a} first?|Is the {o} {c}?|"
    "Describe what the {c} {o} does.|When does the {o} appear?|Who moves the {o}?|"
    "What is the person holding?|Summarize the video.|What happens in this video?|Describe the scene."
).split("|")
_ANSWERS = "Yes.|No.|It is {c}.|There are {n}.|The {o} {a} {p}.|It {a} {p}.|A {c} {o}.".split("|")
_ADJECTIVES = (
    "small large tiny huge tall short long round flat shiny wooden metal plastic soft heavy light fast slow quiet "
    "loud happy sad young old new empty full open closed wet dry hot cold clean dirty striped spotted broken smooth"
).split()
_SCENES = (
    "kitchen street garden forest beach office classroom stadium market river mountain desert city village "
    "station airport library museum hospital factory farm playground laboratory studio theater"
).split()
_VERBS_ING = (
    "cooking reading writing painting dancing singing playing cleaning cutting pouring mixing building "
    "repairing drawing typing talking laughing pointing watching waiting sitting standing sleeping eating drinking"
).split()
_NUMBERS = "zero one two three four five six seven eight nine ten twelve twenty 0 1 2 3 4 5 6 7 8 9 10 16 32 64".split()


def tiny_corpus() -> list[str]:
    """A deterministic English corpus (about 9,000 sentences) about videos, objects, colours, actions."""
    lines = []
    # Stride through the combinations so every word appears in many contexts without an explosion.
    combos = list(product(_COLOURS, _OBJECTS, _ACTIONS))
    for i, (c, o, a) in enumerate(combos[::7]):
        p, t = _PLACES[i % len(_PLACES)], _TIMES[i % len(_TIMES)]
        lines.append(f"{t}, the {c} {o} {a} {p}.")
    for i, q in enumerate(_QUESTIONS * 12):
        c, o, a = _COLOURS[i % len(_COLOURS)], _OBJECTS[(3 * i) % len(_OBJECTS)], _ACTIONS[(5 * i) % len(_ACTIONS)]
        lines.append(q.format(c=c, o=o, a=a))
        ans = _ANSWERS[i % len(_ANSWERS)]
        lines.append(ans.format(c=c, o=o, a=a, p=_PLACES[i % len(_PLACES)], n=_NUMBERS[i % len(_NUMBERS)]))
    for n, o in zip(_NUMBERS * 3, _OBJECTS * 2):
        lines.append(f"The video shows {n} {o}s. The frame rate is {n} frames per second.")
    for i, (adj, scene, verb) in enumerate(product(_ADJECTIVES, _SCENES, _VERBS_ING)):
        if i % 5 == 0:
            o = _OBJECTS[i % len(_OBJECTS)]
            lines.append(f"In a {adj} {scene}, someone is {verb} next to the {o}.")
    lines.append("The quick brown fox jumps over the lazy dog; it's the video's first scene, isn't it?")
    return lines


@functools.lru_cache(maxsize=1)
def _trained_tokenizer_json() -> str:
    """Train once per process (about 50 ms) and keep the serialised result."""
    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TARGET_VOCAB_SIZE,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: any text encodes
        special_tokens=[],
    )
    tok.train_from_iterator(tiny_corpus(), trainer)
    # Specials after the learned vocabulary, in Qwen2 / LLaVA-OneVision order; never split, never normalised.
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return tok.to_str()


def build_tiny_tokenizer(
    *, qwen_vl: bool = False, chat_template: str | None = None, extra_special: tuple[str, ...] = ()
) -> PreTrainedTokenizerFast:
    """A fresh Qwen2-style tokenizer with the LLaVA-OneVision chat template, built offline.

    Deterministic: the same vocabulary and ids on every call and in every process.
    ``<video>`` and ``<image>`` encode as one id each; eos is ``<|im_end|>``, pad ``<|endoftext|>``.
    ``qwen_vl=True`` appends the Qwen-VL vision specials (:data:`QWEN_VL_SPECIAL_TOKENS`, one id
    each, after the LLaVA ones so those ids never move); ``extra_special`` (a family's own media
    tokens) come after those; ``chat_template`` replaces the template.
    """
    extra = (list(QWEN_VL_SPECIAL_TOKENS) if qwen_vl else []) + list(extra_special)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_trained_tokenizer_json()),
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        additional_special_tokens=[IM_START, IMAGE_TOKEN, VIDEO_TOKEN, *extra],
        model_max_length=MODEL_MAX_LENGTH,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = chat_template or LLAVA_ONEVISION_CHAT_TEMPLATE
    return tokenizer
