"""The programs the overhead and memory benchmarks time (child side: runs in the measured interpreter).

Each workload is built by ``make(name)``, which returns ``run(reps)``: the timed part;
everything costly to set up (imports, Django's configuration, compiled templates) is done
before. The parent calibrates ``reps`` to a target duration.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
from typing import Callable, Dict

def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def make_fib() -> Callable[[int], None]:
    def run(reps: int) -> None:
        for _ in range(reps):
            fib(20)

    return run


TEMPLATE = """<html><head><title>{{ title|title }}</title></head><body>
<h1>{{ title }}</h1>
{% for section in sections %}
  <section id="s{{ forloop.counter }}" class="{% cycle 'odd' 'even' %}">
    <h2>{{ section.name|upper }}</h2>
    {% if section.items %}<ul>
      {% for item in section.items %}
        <li class="{% if item.done %}done{% else %}todo{% endif %}">
          {{ item.label|truncatewords:4 }} &mdash; {{ item.price|floatformat:2 }} ({{ item.tags|join:", " }})
        </li>
      {% endfor %}
    </ul>{% else %}<p>{{ empty_text|default:"nothing here" }}</p>{% endif %}
  </section>
{% endfor %}
<footer>{{ footer|safe }} {% now "Y" %}</footer></body></html>"""


def make_django() -> Callable[[int], None]:
    import django
    from django.conf import settings

    settings.configure(TEMPLATES=[{"BACKEND": "django.template.backends.django.DjangoTemplates"}], USE_TZ=True)
    django.setup()
    from django.template import engines

    template = engines["django"].from_string(TEMPLATE)
    rng = random.Random(1)
    context = {
        "title": "quarterly inventory report",
        "empty_text": "",
        "footer": "<em>generated</em>",
        "sections": [
            {"name": f"aisle {s}",
             "items": [{"label": f"item {s}-{i} with a longer descriptive label", "price": rng.random() * 100,
                        "done": i % 3 == 0, "tags": ["a", "b", "c"][: i % 4]} for i in range(s % 3 * 2)]}
            for s in range(3)
        ],
    }

    def run(reps: int) -> None:
        for _ in range(reps):
            template.render(context)

    return run


WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
NUMBER = re.compile(r"(\d+)\.(\d+)")
WORD = re.compile(r"\b([a-z]{4,})\b")


def make_mixed() -> Callable[[int], None]:
    rng = random.Random(2)
    records = [{"id": i, "name": " ".join(rng.choice(WORDS) for _ in range(4)), "score": rng.random() * 1000,
                "tags": rng.sample(WORDS, 3)} for i in range(200)]
    text = " ".join(f"{r['name']} {r['score']:.3f}" for r in records)

    def one() -> int:
        decoded = json.loads(json.dumps(records))
        by_tag: Dict[str, list] = {}
        for record in decoded:
            for tag in record["tags"]:
                by_tag.setdefault(tag, []).append(record)
        ranked = sorted(decoded, key=lambda r: (-r["score"], r["name"]))
        words = WORD.findall(text)
        rounded = NUMBER.sub(lambda m: m.group(1), text)
        counts = {w: words.count(w) for w in set(words[:50])}
        return len(ranked) + len(by_tag) + len(rounded) + len(counts)

    def run(reps: int) -> None:
        for _ in range(reps):
            one()

    return run


def make_threads() -> Callable[[int], None]:
    """Four threads share the work (and the GIL); the main thread waits for them."""

    def busy(reps: int) -> None:
        for _ in range(reps):
            fib(18)

    def run(reps: int) -> None:
        workers = [threading.Thread(target=busy, args=(reps,)) for _ in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    return run


def make_asyncio() -> Callable[[int], None]:
    """500 tasks interleaving small computations at every await."""

    async def task(i: int) -> int:
        total = 0
        for step in range(20):
            total += sum(range(i % 7 + step))
            await asyncio.sleep(0)
        return total

    async def many() -> None:
        await asyncio.gather(*(task(i) for i in range(500)))

    def run(reps: int) -> None:
        for _ in range(reps):
            asyncio.run(many())

    return run


def make_pool() -> Callable[[int], None]:
    """fib in the main thread while the 15 threads of a worker pool wait, 10 frames deep."""
    idle = threading.Event()

    def waiting(depth: int) -> None:
        if depth > 1:
            waiting(depth - 1)
        else:
            idle.wait()

    for _ in range(15):
        threading.Thread(target=waiting, args=(10,), daemon=True).start()
    return make_fib()


MAKERS = {"fib": make_fib, "django": make_django, "mixed": make_mixed, "threads": make_threads,
          "asyncio": make_asyncio, "pool": make_pool}
NAMES = ["fib", "django", "mixed", "threads", "asyncio"]  # the overhead benchmark's
DESCRIPTIONS = {
    "fib": "recursive fib(20), repeated",
    "django": "a Django template (loops, filters, cycle, if) rendered repeatedly, as in pyinstrument's docs "
              "(there 4000 times; 4000 renders take about 1.2 s here)",
    "mixed": "json round trips, regex findall/sub, dict grouping and sorting of 200 records, repeated",
    "threads": "four threads each running fib(18) repeatedly (all threads profiled where the profiler can)",
    "asyncio": "asyncio.run of 500 tasks, each awaiting 20 times between small computations, repeated",
    "pool": "recursive fib(20) in the main thread while 15 threads of a worker pool wait 10 frames deep",
}


def make(name: str) -> Callable[[int], None]:
    return MAKERS[name]()
