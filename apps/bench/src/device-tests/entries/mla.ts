import '../../../../../packages/mla/test/mla.test';
import { main } from '../run';

await main('mla/test/mla');
