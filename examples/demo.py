"""A small program with a clear time split, for trying the profiler.

    pyinstrument examples/demo.py
    pyinstrument --all-threads examples/demo.py

Roughly: a third of the time in pure-Python arithmetic (Worker.compute), a third in
library code (re and json), a sleep of 0.15 s, and a helper thread that hashes data
while the main thread works.
"""

import hashlib
import json
import re
import threading
import time

LOG_LINE = re.compile(r"(?P<level>[A-Z]+) (?P<user>user\d+) took (?P<ms>\d+)ms")


class Worker:
    def __init__(self, size):
        self.size = size

    def compute(self):
        """Busy pure-Python work: sum of squares of the primes below size."""
        total = 0
        for n in range(2, self.size):
            if all(n % d for d in range(2, int(n**0.5) + 1)):
                total += n * n
        return total


def parse_logs(count):
    """Library work: many small regex matches, then a JSON round trip."""
    lines = [f"INFO user{i % 97} took {i % 500}ms" for i in range(count)]
    records = [LOG_LINE.match(line).groupdict() for line in lines]
    encoded = json.dumps(records)
    return len(json.loads(encoded))


def hash_chunks(rounds, results):
    """Runs in a helper thread; hashlib releases the GIL for large inputs."""
    data = b"x" * 1_000_000
    for _ in range(rounds):
        data = hashlib.sha256(data).digest() * 31250
    results.append(hashlib.sha256(data).hexdigest()[:12])


def main():
    results = []
    helper = threading.Thread(target=hash_chunks, args=(300, results), name="hasher")
    helper.start()

    primes = Worker(100_000).compute()
    records = parse_logs(40_000)
    time.sleep(0.15)

    helper.join()
    print(f"sum of squared primes: {primes}, log records: {records}, digest: {results[0]}")


if __name__ == "__main__":
    main()
