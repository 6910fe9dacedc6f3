// Inputs for the tokenizer test vectors. Hand-written cases by theme, then
// generated ones (long runs, random mixes from a fixed seed), so the file
// the tests read is reproducible from this one.
'use strict';

const english = [
  'Hello, world!',
  'Hello! 毕老师！1 + 1 = 2 ĠÑĤÐ²ÑĬÑĢ',
  'The year 2026 has 365 days.',
  'The quick brown fox jumps over the lazy dog.',
  "It's a dog's life, isn't it? We'll see, they're here, I'd say.",
  'Mr. O\'Neil paid $1,234.56 (incl. 7.5% tax) on 2024-03-15.',
  'e-mail: someone@example.com, web: https://example.org/path?q=1&r=two#frag',
  'ALL CAPS SENTENCE WITH ACRONYMS LIKE NASA, GPU, and HTTP/2.',
  'camelCaseIdentifier snake_case_identifier kebab-case-identifier',
  '"Quoted" \'single\' «guillemets» „German“ “curly” ‘single curly’',
  'Ellipsis… em—dash en–dash and a bullet • here.',
  'a',
  ' ',
  '',
  'I',
  ' the',
  'antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis',
  'Hello world\nHello world\n\nHello world',
  'Supercalifragilisticexpialidocious!!!???...',
  'naïve café résumé coöperate façade jalapeño',
];

const code = [
  '#include <stdio.h>\n\nint main(void)\n{\n    printf("hello\\n");\n    return 0;\n}\n',
  'import numpy as np\nfrom pathlib import Path\n\ndef f(x: int) -> int:\n    return x ** 2 + 1\n',
  'python main.py --config=conf.yaml && ./run.sh > out.log 2>&1',
  'if (a != b && c <= d || !e) { x += 1; y >>= 2; } else { z = a ? b : c; }',
  'const f = async (x) => { await g(x?.y ?? 0); };',
  '    for i in range(10):\n        print(i)\n\t\treturn',
  'SELECT id, name FROM users WHERE age >= 18 ORDER BY name;',
  '<div class="main"><p>Hi &amp; bye</p></div>',
  '{"key": [1, 2, 3], "nested": {"a": null, "b": true}}',
  'fn main() { let v: Vec<u8> = vec![0; 16]; println!("{:?}", v); }',
  'x=1;y=2;z=x*y/3%4^5|6&7~8',
  '#define MAX(a,b) ((a)>(b)?(a):(b))',
  'git commit -m "fix: handle .py and .cpp files" -- src/*.c',
  '$ ls -la /usr/local/bin | grep -v "^d"',
  '// comment\n/* block\n * comment */\n',
  'a.b.c.d e.f g.h.i.jpg README.md setup.py',
  '@decorator\nclass Foo(Base):\n    pass\n',
  '0x1F 0b1010 1e-9 3.14159 -42 +7 1_000_000',
  '\\n\\t\\r escaped \\\\ backslashes',
  '[[1,2],[3,4]] (a(b(c))) {{x}} <<<>>>',
];

const multilingual = [
  '你好，世界！',
  '中华人民共和国成立于1949年10月1日。',
  '我爱北京天安门，天安门上太阳升。',
  '日本語のテキストです。カタカナとひらがなと漢字。',
  'ｶﾀｶﾅ 半角カナ ＡＢＣ　全角スペース',
  'コンピューター・サイエンス、プログラミング言語',
  '한국어 텍스트입니다. 안녕하세요!',
  '대한민국의 수도는 서울입니다.',
  'Привет, мир! Как дела?',
  'Съешь же ещё этих мягких французских булок, да выпей чаю.',
  'مرحبا بالعالم! كيف حالك؟',
  'اللغة العربية جميلة جداً.',
  'नमस्ते दुनिया! हिन्दी भाषा।',
  'ภาษาไทยไม่มีช่องว่างระหว่างคำ',
  'Γειά σου Κόσμε! Ελληνικά.',
  'שלום עולם! עברית.',
  'Tiếng Việt có dấu: Xin chào thế giới.',
  'Türkçe: İstanbul, ığdır, şeker, çay, güneş, öğretmen.',
  'Deutsch: Straße, Größe, Äpfel, Übung, Öl.',
  'Polski: Zażółć gęślą jaźń.',
  'Ελληνικά και English και 中文 mixed 한국어 テキスト',
  'Emoji: 😀😃😄 👍🏽 ❤️ 🇺🇸🇯🇵🇨🇳',
  '👨‍👩‍👧‍👦 family, 🧑🏿‍💻 technologist, 🏳️‍🌈 flag',
  '🇬🇧🇫🇷🇩🇪🇮🇹🇪🇸',
  'Math: ∑_{i=1}^{n} i² = n(n+1)/2, ∀x∈ℝ, √2 ≈ 1.414, ½ ¾ ⅓',
  'Symbols: © ® ™ § ¶ † ‡ € £ ¥ ₹ ₿ ° ± × ÷',
  'Box drawing: ┌─┬─┐ │ │ │ └─┴─┘',
  'Combining: e\u0301 a\u0300 o\u0308 n\u0303 \u0301alone',
  'Zero width: a\u200bb c\u200dd e\u2060f \ufeffBOM',
  'Full width digits: ０１２３４５６７８９ and Arabic ٠١٢٣٤٥٦٧٨٩',
  'Devanagari digits: ०१२३४५ Roman: Ⅻ ⅻ circled: ①②③',
  'Kana with marks: が ぱ ゔ ゛゜ ゝゞ ヽヾ ー',
  '〇 一二三 〆 々 〻',
  '龥龦 鿿 㐀 𠀀 𪚥',
  // Unicode 15.1 / 16.0 characters (newer than libutf8proc's tables).
  'CJK Ext I: \u{2EBF0}\u{2EBF1}a\u{2EE5D} Todhri: \u{105C0}\u{105C1}. Garay: \u{10D40}\u{10D41}\u{10D4A}',
  'Kirat Rai \u{16D40}\u{16D41}\u{16D70}\u{16D71}\u{16D72}\u{16D73} Ol Onal \u{1E5D0}\u{1E5F1} legacy \u{1CC00}\u{1CCF0}',
  'IDC \u2FFC\u2FFF stroke \u31EF Sunuwar \u{11BC0}\u{11BF0} Gurung \u{16100}\u{16130}x',
];

const digits = [
  '1234567',
  '0',
  '12',
  '123',
  '1234',
  '12345678901234567890',
  '3.14159265358979323846',
  '1,000,000.00',
  '2026-05-17T12:34:56Z',
  'v1.2.3-rc4',
  'abc123def456',
  '123abc',
  '1 2 3 4 5 6 7 8 9 10',
  '+1 (555) 123-4567',
  '١٢٣٤٥٦٧ ٨٩',
  '0000000000000000',
  '99 bottles of beer',
  'x1y22z333w4444',
  '1²3³',
  '12½',
];

const whitespace = [
  'a  b',
  'a   b',
  'a\tb',
  'a\t\tb',
  'a\nb',
  'a\n\nb',
  'a\r\nb',
  'a\r\n\r\nb',
  'a\rb',
  'trailing spaces   ',
  '   leading spaces',
  '\n',
  '\n\n\n',
  ' \n',
  '\n ',
  '  \n  ',
  'a \n b',
  'x\u00a0y\u00a0\u00a0z',
  'x\u3000y\u3000\u3000z',
  'x\u2003y\u2028z\u2029w',
  'tabs\tand spaces \t mixed\t \t',
  '\t\n\t\n',
  'line one\nline two\r\nline three\rline four',
  'end with newline\n',
  'end with crlf\r\n',
  '    four spaces then text',
  'text then eight spaces        ',
  '. \n',
  '!\n\n',
  ' !!\r\n',
  'a\u000bb\u000cc',
  '\u0085next line',
];

const punctuation = [
  '#include',
  '.py',
  'file.py',
  '#include <stdio.h>',
  '...and',
  '!important',
  '@user',
  '$HOME',
  '--verbose',
  '~/path',
  '"quoted"',
  "'it",
  '(parenthesis)',
  '[bracket]',
  '{brace}',
  '<tag>',
  'a.b',
  'x.Y.z',
  '#1',
  '.5',
  '!!!',
  '?!?!',
  '、。「」『』',
  '¿Qué? ¡Sí!',
  ',,,',
  '—',
  '.\u00e9t\u00e9',
  '.Привет',
];

const chat = [
  '<｜begin▁of▁sentence｜>',
  '<｜end▁of▁sentence｜>',
  '<｜User｜>',
  '<｜Assistant｜>',
  '<think>',
  '</think>',
  '｜DSML｜',
  '<｜DSML｜tool_calls>',
  '</｜DSML｜tool_calls>',
  '<｜User｜>你好<｜Assistant｜><think>推理</think>答案<｜end▁of▁sentence｜>',
  '<｜begin▁of▁sentence｜>You are a helpful assistant.<｜User｜>Hi!<｜Assistant｜></think>Hello! How can I help?<｜end▁of▁sentence｜>',
  '<｜begin▁of▁sentence｜><｜User｜>What is 2+2?<｜Assistant｜><think>\n2+2 = 4\n</think>\n\n4<｜end▁of▁sentence｜>',
  '<｜DSML｜tool_calls>\n<｜DSML｜invoke name="get_weather">\n<｜DSML｜parameter name="city" string="true">Paris</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>',
  '<｜User｜><｜User｜><｜User｜>',
  '<think></think>',
  '<thinking>not a token</thinking>',
  '<｜User|>ascii bar is not the token',
  '<|EOT|>',
  '<｜latest_reminder｜>Today is 2026-05-17.',
  '<｜action｜><｜query｜><｜authority｜><｜domain｜><｜title｜><｜read_url｜>',
  '<｜place▁holder▁no▁5｜>',
  '<|place_holder_mm_span_0021|>',
  '<｜/table>｜<｜table｜><｜tr｜><｜td｜>x<｜/td｜><｜/tr｜>',
  '<dsml:tool>',
  'x<｜User｜>y',
  ' <｜User｜> ',
  '<<｜User｜>>',
  '<｜User｜',
  '｜DSML｜｜DSML｜',
  '<｜fim▁begin｜>def f():<｜fim▁hole｜>\n<｜fim▁end｜>',
  '<tool_result>{"temp": 21}</tool_result>',
  '<｜begin▁sys｜>system<｜end▁sys｜>',
  '<｜image｜><｜rl_image_pad｜>',
  '<｜end_of_query｜>',
];

// Long inputs: BPE and the whitespace alternatives on pieces of thousands
// of characters.
const longs = [
  ' '.repeat(3000),
  ' '.repeat(2999) + 'x',
  '\n'.repeat(1000),
  '\t'.repeat(500) + 'end',
  '7'.repeat(4000),
  'a'.repeat(3000),
  'ab'.repeat(1500),
  'abc'.repeat(1000),
  'Hello '.repeat(400),
  '中'.repeat(1000),
  'カタカナ'.repeat(300),
  '!?'.repeat(1000),
  '😀'.repeat(500),
  ' \n'.repeat(800),
  '.'.repeat(2000) + '\n\n',
  'é'.repeat(1000),
  ('The quick brown fox jumps over the lazy dog. ').repeat(60),
  ('<｜User｜>hi<｜Assistant｜>hello<｜end▁of▁sentence｜>').repeat(40),
];

// A small fixed-seed generator (xorshift32): random mixes of the classes
// the pre-tokenizer distinguishes, to reach alternation corners that
// hand-written cases miss.
function randomMixes(count, seed) {
  const atoms = [
    ' ', ' ', ' ', '  ', '\n', '\r\n', '\r', '\t', '\u00a0', '\u3000',
    'a', 'b', 'Z', 'word', 'The', 'é', 'ß', 'Я', 'ы', 'ع', 'ह', 'ा',
    '0', '1', '42', '999', '²', '½', '٣',
    '.', ',', '!', '?', '#', '$', '-', '_', '/', '\\', '(', ')', '"', "'",
    '+', '=', '<', '>', '|', '~', '`', '^', '@', '%', '&', '*', '{', '}',
    '。', '、', '！', '・', '〜',
    '中', '文', '字', 'ひ', 'ら', 'カ', 'ナ', 'ー', '한', '글',
    '\u0301', '\u0308', '\u200d', '\u200b', '\ufe0f',
    '😀', '👍', '🏽', '🇺', '🇸', '€', '©', '→',
    '<｜User｜>', '<think>', '｜DSML｜', '<｜end▁of▁sentence｜>',
  ];
  let x = seed >>> 0;
  const next = () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x;
  };
  const out = [];
  for (let i = 0; i < count; i++) {
    const n = 1 + (next() % 40);
    let s = '';
    for (let k = 0; k < n; k++)
      s += atoms[next() % atoms.length];
    out.push(s);
  }
  return out;
}

module.exports = {
  groups: { english, code, multilingual, digits, whitespace, punctuation,
            chat, longs, random: randomMixes(150, 20260517) },
};
