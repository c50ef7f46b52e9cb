import '../../../../../packages/prefill/test/single-prefill.test';
import { main } from '../run';

await main('prefill/test/single-prefill');
