"""Text keys as users write them, for the tests of placement and balance: words and names with a number, dates,
and UTF-8 words (Cyrillic, Greek, Japanese, accented Latin), in fixed proportions, from a seed."""
import random

WORDS = ("account apple article basket bird book cart city cloud comment customer date device doctor event file "
         "flight game garden group house image invoice item job key lamp lesson letter list machine map meeting "
         "message metric movie music name note number order page payment person photo picture plan player post "
         "price product profile queue question quote rate record report request review room route sale school "
         "score session setting shop song source station status stock store story student table task team ticket "
         "time token topic track trade train user value vehicle video visit volume wallet water window word work "
         "year zone").split()
NAMES = ("Alice Bob Carol Dave Erin Frank Grace Heidi Ivan Judy Mallory Niaj Olivia Peggy Rupert Sybil Trent Victor "
         "Walter Yvonne").split()
UTF8_WORDS = ("ключ пользователь заказ город κλειδί χρήστης キー ユーザー 注文 clé café naïve straße über ñandú "
              "élève").split()


def text_keys(count, seed=1):
    """count distinct text keys (bytes, UTF-8)."""
    rng, keys = random.Random(seed), []
    for i in range(count):
        kind = rng.random()
        if kind < 0.7:
            text = f"{rng.choice(WORDS)}:{i:06d}"
        elif kind < 0.8:
            text = f"{rng.choice(NAMES)}/{rng.choice(WORDS)}/{i}"
        elif kind < 0.9:
            text = f"{2000 + rng.randrange(30)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}/{i}"
        else:
            text = f"{rng.choice(UTF8_WORDS)}:{i}"
        keys.append(text.encode())
    return keys
