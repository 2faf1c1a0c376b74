/**
 * Docker-style names for containers created without `--name`: an adjective and a notable
 * scientist or engineer, `adjective_surname`, as moby's namesgenerator makes them.
 */
import { randomInt } from 'node:crypto';

const ADJECTIVES = [
  'admiring', 'agitated', 'amazing', 'awesome', 'blissful', 'bold', 'brave', 'charming', 'clever', 'compassionate',
  'competent', 'confident', 'cool', 'dazzling', 'determined', 'eager', 'ecstatic', 'elastic', 'elegant', 'epic',
  'festive', 'focused', 'friendly', 'funny', 'gallant', 'gifted', 'goofy', 'gracious', 'happy', 'hopeful',
  'infallible', 'inspiring', 'jolly', 'keen', 'kind', 'laughing', 'loving', 'lucid', 'magical', 'modest',
  'nice', 'nifty', 'nostalgic', 'objective', 'optimistic', 'peaceful', 'pensive', 'practical', 'priceless', 'quirky',
  'quizzical', 'relaxed', 'reverent', 'romantic', 'serene', 'sharp', 'silly', 'sleepy', 'stoic', 'strange',
  'sweet', 'tender', 'thirsty', 'trusting', 'upbeat', 'vibrant', 'vigilant', 'wizardly', 'wonderful', 'youthful',
  'zealous', 'zen',
];

const NAMES = [
  'albattani', 'allen', 'archimedes', 'babbage', 'banach', 'bardeen', 'bartik', 'bhabha', 'black', 'blackwell',
  'bohr', 'booth', 'borg', 'brahmagupta', 'brown', 'carson', 'cerf', 'chandrasekhar', 'clarke', 'curie',
  'darwin', 'davinci', 'dijkstra', 'einstein', 'elion', 'engelbart', 'euclid', 'euler', 'faraday', 'fermat',
  'fermi', 'feynman', 'franklin', 'galileo', 'gauss', 'goldberg', 'goodall', 'hamilton', 'hawking', 'heisenberg',
  'hertz', 'hodgkin', 'hopper', 'hypatia', 'jackson', 'jennings', 'johnson', 'kalam', 'kepler', 'knuth',
  'lamarr', 'lamport', 'leakey', 'lovelace', 'lumiere', 'margulis', 'mayer', 'mccarthy', 'meitner', 'mendel',
  'morse', 'napier', 'newton', 'nobel', 'noether', 'pare', 'pascal', 'pasteur', 'perlman', 'pike',
  'poincare', 'ramanujan', 'ritchie', 'rosalind', 'sammet', 'shannon', 'shockley', 'sinoussi', 'stonebraker', 'swartz',
  'tesla', 'thompson', 'torvalds', 'turing', 'varahamihira', 'wescoff', 'wiles', 'williams', 'wing', 'wozniak',
  'wright', 'yalow', 'yonath',
];

/** A random name; `taken` is asked so a clash is avoided (a digit is appended as moby does on retry). */
export function randomName(taken: (name: string) => boolean): string {
  for (let attempt = 0; ; attempt++) {
    let name = `${ADJECTIVES[randomInt(ADJECTIVES.length)]}_${NAMES[randomInt(NAMES.length)]}`;
    if (attempt > 0) name += String(randomInt(10));
    // moby: "Steve Wozniak is not boring".
    if (name === 'boring_wozniak') continue;
    if (!taken(name)) return name;
  }
}

/** Docker's rule for container names. */
export const VALID_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;
