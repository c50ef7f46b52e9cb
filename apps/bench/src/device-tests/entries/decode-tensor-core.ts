import '../../../../../packages/decode/test/tensor-core-decode.test';
import { main } from '../run';

await main('decode/test/tensor-core-decode');
