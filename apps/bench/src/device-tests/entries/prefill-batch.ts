import '../../../../../packages/prefill/test/batch-prefill.test';
import { main } from '../run';

await main('prefill/test/batch-prefill');
