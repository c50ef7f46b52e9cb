import '../../../../../packages/prefill/test/block-table.test';
import { main } from '../run';

await main('prefill/test/block-table');
