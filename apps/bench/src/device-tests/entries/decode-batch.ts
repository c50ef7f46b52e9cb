import '../../../../../packages/decode/test/batch-decode.test';
import { main } from '../run';

await main('decode/test/batch-decode');
