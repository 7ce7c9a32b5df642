// A tiny calculator with the same bug as examples/calc: the average of no
// numbers divides by zero. It reports it the way real apps do, with
// console.error and a promise nobody handles, which the widget attaches to a
// report.
const input = document.getElementById('numbers');
const result = document.getElementById('result');

function parse() {
  return input.value.split(',').map((s) => s.trim()).filter((s) => s !== '').map(Number);
}

function average(xs) {
  if (xs.length === 0) throw new RangeError('average() of an empty list');
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

document.getElementById('sum').addEventListener('click', () => {
  result.textContent = String(parse().reduce((a, b) => a + b, 0));
});

document.getElementById('average').addEventListener('click', () => {
  try {
    result.textContent = String(average(parse()));
  } catch (e) {
    console.error('calc failed:', e);
    result.textContent = 'Error';
    // A save of the failed computation that nobody awaits.
    Promise.reject(new Error('could not save the result of average()'));
  }
});
