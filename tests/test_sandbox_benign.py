"""Benign programs still run in the sandbox and return the right values.

Expected values are computed here from ``OBJECTS`` (the fake patch's known contents), not taken
from the sandbox."""
from __future__ import annotations

import math

import pytest

from graft_vqa import sandbox
from tests.test_sandbox_fakes import OBJECTS, FakePatch, program as P

CARS = OBJECTS["car"]


def case(name: str, source: str, expected: object) -> object:
    return pytest.param(source, expected, id=name)


BENIGN = [
    case("exists", P("return [image_patch.exists('car'), image_patch.exists('pool')]"),
         [bool(OBJECTS["car"]), bool(OBJECTS["pool"])]),
    case("count", P("return image_patch.count('car')"), len(CARS)),
    case("for-loop-sum", P("total = 0.0\nfor p in image_patch.find('car'):\n    total += p.area_m2\nreturn total"),
         sum(CARS)),
    case("sorted-key-lambda", P("ps = image_patch.find('car')\nreturn [p.area_m2 for p in sorted(ps, key=lambda p: -p.area_m2)]"),
         sorted(CARS, reverse=True)),
    case("list-comprehension", P("return len([p for p in image_patch.find('car') if p.area_m2 > 10])"),
         len([a for a in CARS if a > 10])),
    case("dict-comprehension", P("return {n: image_patch.count(n) for n in ['car', 'tree', 'pool']}"),
         {n: len(v) for n, v in OBJECTS.items()}),
    case("set-ops", P("present = {n for n in ['car', 'tree', 'pool'] if image_patch.exists(n)}\n"
                      "present.add('road')\npresent.discard('road')\nreturn sorted(present | set())"),
         sorted(n for n, v in OBJECTS.items() if v)),
    case("math", P("import math\nfrom math import floor\nt = image_patch.find('tree')[0].area_m2\n"
                   "return [math.sqrt(t), floor(math.pi * 10)]"),
         [math.sqrt(OBJECTS["tree"][0]), 31]),
    case("f-strings", P("ps = image_patch.find('car')\nbig = max(p.area_m2 for p in ps)\n"
                        "return f'{len(ps)} cars, largest {big:.1f} m2, {len(ps)!r:>3}'"),
         f"{len(CARS)} cars, largest {max(CARS):.1f} m2, {len(CARS)!r:>3}"),
    case("try-except", P("try:\n    n = int('three')\nexcept ValueError as e:\n    n = -1\nfinally:\n    n = n * 2\nreturn n"),
         -2),
    case("api-error-caught", P("try:\n    image_patch.fail()\nexcept Exception as e:\n    return 'caught ' + str(e)"),
         "caught fail: AreaUnavailableError: this tile has no georeferencing; pass gsd_m"),
    case("nested-functions", P("def outer(k):\n    def inner(x):\n        return x * k\n    return inner\n"
                               "double = outer(2)\nreturn [double(a) for a in [1, 2, 3]]"),
         [2, 4, 6]),
    case("small-class", P("c = Stats()\nfor p in image_patch.find('car'):\n    c.add(p.area_m2)\nreturn [c.n, c.mean()]",
                          header="class Stats:\n    def __init__(self):\n        self.n = 0\n        self.total = 0.0\n"
                                 "    def add(self, v):\n        self.n = self.n + 1\n        self.total = self.total + v\n"
                                 "    def mean(self):\n        return self.total / self.n\n"),
         [len(CARS), sum(CARS) / len(CARS)]),
    case("class-inheritance", P("return [Car().kind(), Car().wheels]",
                                header="class Vehicle:\n    wheels = 4\n    def kind(self):\n        return 'vehicle'\n"
                                       "class Car(Vehicle):\n    def kind(self):\n        return 'car'\n"),
         ["car", 4]),
    case("custom-exception", P("try:\n    raise NotFound('none')\nexcept NotFound as e:\n    return e.args[0]",
                               header="class NotFound(Exception):\n    pass\n"),
         "none"),
    case("while-break-enumerate-zip", P("out = []\ni = 0\nwhile True:\n    i += 1\n    if i > 3:\n        break\n"
                                        "for k, (a, b) in enumerate(zip('xy', [5, 6])):\n    out.append(f'{k}{a}{b}')\nreturn [i, out]"),
         [4, ["0x5", "1y6"]]),
    case("string-methods", P("s = ' Car Park, Tree '\nparts = [w.lower() for w in s.strip().replace(',', '').split()]\n"
                             "return ['-'.join(parts), s.strip().startswith('Car'), 'park' in parts]"),
         ["car-park-tree", True, True]),
    case("dict-list-ops", P("d = {}\nd.setdefault('a', []).append(1)\nd['b'] = d.get('b', 0) + 2\nl = [3, 1, 2]\n"
                            "l.sort()\nl.insert(0, 9)\nl.pop()\nreturn [sorted(d.items()), l, list(d.keys())]"),
         [[["a", [1]], ["b", 2]], [9, 1, 2], ["a", "b"]]),
    case("builtins", P("v = [3.7, -1, 2]\nreturn [min(v), max(v, key=abs), round(v[0]), abs(v[1]), divmod(7, 2),"
                       " any(x < 0 for x in v), all(isinstance(x, (int, float)) for x in v), list(reversed(v))]"),
         [-1, 3.7, 4, 1, [3, 1], True, True, [2, -1, 3.7]]),
    case("module-level-helpers", P("return [helper(a) for a in image_patch.find('tree')]",
                                   header="SCALE = 2\ndef helper(p):\n    return p.area_m2 * SCALE\n"),
         [OBJECTS["tree"][0] * 2]),
    case("relation-with-patch-argument", P("cars = image_patch.find('car')\nreturn [cars[0].left_of(cars[1]), cars[2].left_of(cars[0])]"),
         [True, False]),
    case("property-label", P("return [p.label for p in image_patch.find('tree')] + [image_patch.label]"),
         ["tree", "root"]),
    # Issue 12, item 8: what LLMs write constantly.
    case("augassign-dict-item", P("counts = {}\nfor name in ['car', 'tree', 'car']:\n    counts.setdefault(name, 0)\n"
                                  "    counts[name] += image_patch.count(name)\nreturn counts"),
         {"car": 2 * len(CARS), "tree": len(OBJECTS["tree"])}),
    case("augassign-d-k-plus-one", P("d = {'a': 0}\nk = 'a'\nd[k] += 1\nd[k] += 1\nreturn d"), {"a": 2}),
    case("augassign-nested-item", P("g = {'x': {'y': 1}, 'l': [[1, 2]]}\ng['x']['y'] *= 5\ng['l'][0][1] -= 2\n"
                                    "g['l'][0] += [7]\nreturn g"), {"x": {"y": 5}, "l": [[1, 0, 7]]}),
    case("augassign-list-item", P("areas = [p.area_m2 for p in image_patch.find('car')]\nfor i in range(len(areas)):\n"
                                  "    areas[i] /= 2\nreturn areas"), [a / 2 for a in CARS]),
    case("augassign-self-attr", P("c = Counter()\nfor p in image_patch.find('car'):\n    c.add(p.area_m2)\n"
                                  "return [c.n, c.total]",
                                  header="class Counter:\n    def __init__(self):\n        self.n = 0\n        self.total = 0.0\n"
                                         "    def add(self, a):\n        self.n += 1\n        self.total += a\n"),
         [len(CARS), sum(CARS)]),
    case("augassign-class-attr", P("Seen.count += 1\nSeen.count += 1\nreturn Seen.count",
                                   header="class Seen:\n    count = 0\n"), 2),
    case("augassign-attr-item", P("b = Bag()\nb.items['car'] += image_patch.count('car')\nb.items['car'] **= 2\n"
                                  "return b.items",
                                  header="class Bag:\n    def __init__(self):\n        self.items = {'car': 1}\n"),
         {"car": (1 + len(CARS)) ** 2}),
    case("augassign-evaluates-once", P("calls = []\ndef key():\n    calls.append(1)\n    return 'k'\n"
                                       "d = {'k': 1}\nd[key()] += 1\nreturn [d, len(calls)]"), [{"k": 2}, 1]),
    case("str-format-spec", P("x = image_patch.find('car')[1].area_m2\nreturn '{:.1f}'.format(x)"), f"{CARS[1]:.1f}"),
    case("str-format-m2", P("return '{:.1f} m2'.format(sum(p.area_m2 for p in image_patch.find('car')))"),
         f"{sum(CARS):.1f} m2"),
    case("fstring-spec", P("x = image_patch.find('tree')[0].area_m2\nreturn f'{x:.1f}'"), f"{OBJECTS['tree'][0]:.1f}"),
    case("str-format-fields", P("return ['{} and {}'.format(1, 2), '{1}-{0}'.format('a', 'b'), "
                                "'{n:>4d}|{s!r}'.format(n=7, s='x'), '{:{w}.{p}f}'.format(3.14159, w=7, p=2), "
                                "'{{literal}} {}'.format(5), '{:,}'.format(1234567), '{:.0%}'.format(0.25)]"),
         ["1 and 2", "b-a", "   7|'x'", "   3.14", "{literal} 5", "1,234,567", "25%"]),
    case("format-map-and-builtin", P("return ['{name}: {n}'.format_map({'name': 'car', 'n': image_patch.count('car')}), "
                                     "format(2.5, '.2f'), format(7, '03d'), format('x', '>3')]"),
         [f"car: {len(CARS)}", "2.50", "007", "  x"]),
    case("proxy-equality", P("ps = image_patch.find('car')\nreturn [ps[0] == ps[0], ps[0] == ps[1], len({ps[0], ps[0]})]"),
         [True, False, 1]),
]


def test_there_are_at_least_fifteen_benign_programs() -> None:
    assert len(BENIGN) >= 15


@pytest.mark.parametrize("source, expected", BENIGN)
def test_benign_program_runs(source: str, expected: object) -> None:
    result = sandbox.run(source, FakePatch())
    assert result.status == "ok", result.error
    assert result.value == pytest.approx(expected) if isinstance(expected, float) else result.value == expected
    assert result.error is None


def test_a_returned_patch_is_an_error_never_a_host_object() -> None:
    # Issue 12, item 5: handles decode only where the API takes patches, never in a return value.
    root = FakePatch()
    result = sandbox.run(P("return image_patch.find('car')"), root)
    assert result.status == "error" and result.value is None
    assert "returned a list of ImagePatch" in result.error and "len(patches)" in result.error
    assert [type(p) for p in result.patches] == [FakePatch] * len(CARS) and result.calls == 1
    assert [p.area_m2 for p in result.patches] == CARS  # the host still knows what the API handed out


def test_calls_are_counted_on_the_host() -> None:
    FakePatch.api_log = []
    result = sandbox.run(P("ps = image_patch.find('car')\nreturn sum(p.area_m2 for p in ps)"), FakePatch())
    assert result.status == "ok" and result.value == pytest.approx(sum(CARS))
    assert FakePatch.api_log == ["find"] + ["area_m2"] * len(CARS)
    assert result.calls == len(FakePatch.api_log)


def test_print_is_captured() -> None:
    result = sandbox.run(P("print('cars:', image_patch.count('car'))\nreturn 1"), FakePatch())
    assert (result.status, result.stdout) == ("ok", f"cars: {len(CARS)}\n")


def test_runtime_error_quotes_the_failing_line() -> None:
    result = sandbox.run(P("x = 1\nreturn x / 0"), FakePatch())
    assert result.status == "error" and result.line == 3
    assert result.error == "line 3: `return x / 0`: ZeroDivisionError: division by zero"


def test_uncaught_api_error_quotes_the_line() -> None:
    result = sandbox.run(P("a = image_patch.count('car')\nreturn image_patch.fail()"), FakePatch())
    assert result.status == "error" and result.line == 3
    assert result.error.startswith("line 3: `return image_patch.fail()`: ImagePatchError: fail: AreaUnavailableError")


def test_non_plain_api_result_becomes_a_catchable_error() -> None:
    result = sandbox.run(P("try:\n    image_patch.opaque()\nexcept Exception as e:\n    return str(e)"), FakePatch())
    assert result.status == "ok" and "cannot pass" in result.value and "_Model" in result.value


def test_time_inside_api_calls_counts_against_the_wall_clock_not_the_cpu_limit() -> None:
    # Issue 12, items 1 and 2: timeout_s is one wall-clock limit, API calls included; cpu_s counts
    # only the program's own work (waiting for the host costs it nothing).
    src = P("return [image_patch.slow(0.5) for i in range(3)]")
    stopped = sandbox.run(src, FakePatch(), timeout_s=1.0)
    assert stopped.status == "timeout" and stopped.line == 2
    assert "API calls included" in stopped.error and stopped.elapsed_s >= 1.0  # stopped during a call
    waited = sandbox.run(src, FakePatch(), timeout_s=5.0, cpu_s=0.2)
    assert waited.status == "ok", waited.error
    assert waited.value == [0.5] * 3 and waited.elapsed_s >= 1.5
