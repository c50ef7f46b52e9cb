import '../../../../../packages/cuda-graph/test/graph.test';
import { main } from '../run';

await main('cuda-graph/test/graph');
