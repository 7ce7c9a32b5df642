import unittest

import calc


class TotalTest(unittest.TestCase):
    def test_empty_is_zero(self):
        self.assertEqual(calc.total([]), 0)

    def test_sums(self):
        self.assertEqual(calc.total([1, 2, 3.5]), 6.5)


class AverageTest(unittest.TestCase):
    def test_empty_raises(self):
        with self.assertRaises(ValueError):
            calc.average([])


class MedianTest(unittest.TestCase):
    def test_odd_count(self):
        self.assertEqual(calc.median([3, 1, 2]), 2)

    def test_even_count(self):
        self.assertEqual(calc.median([4, 1, 3, 2]), 2.5)


class PercentTest(unittest.TestCase):
    def test_rounds(self):
        self.assertEqual(calc.percent(1, 3), 33.3)

    def test_zero_whole_raises(self):
        with self.assertRaises(ValueError):
            calc.percent(1, 0)


if __name__ == "__main__":
    unittest.main()
